"""Canonical operating-envelope endpoints: list, detail with history, withdraw (support)."""

from __future__ import annotations

from django.utils import timezone
from rest_framework.response import Response

from microgrid.common.api import ApiView, json_object
from microgrid.common.filters import AtQuery, query_at
from microgrid.common.openapi import api_doc
from microgrid.common.roles import READERS, SUPPORT_ONLY
from microgrid.envelopes import selectors, services
from microgrid.envelopes.api import serializers as answers
from microgrid.envelopes.api.serializers import EnvelopeWithdraw, withdraw_input
from microgrid.envelopes.filters import EnvelopeFilter
from microgrid.topology.selectors import microgrid_get

TAG = "operating envelopes"


class EnvelopeListView(ApiView):
    read_roles = READERS

    @api_doc(
        operation_id="operating_envelopes_list",
        summary="Envelopes, latest window first",
        parameters=EnvelopeFilter.parameters(),
        ok={200: answers.EnvelopeList},
        errors={404: "MICROGRID_NOT_FOUND", 422: "FIELD_INVALID (status, at or limit)"},
        tag=TAG,
    )
    def get(self, request, microgrid_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        filters = EnvelopeFilter(request.query_params)
        at = filters.value("at") or timezone.now()
        rows = selectors.envelope_list(
            microgrid, at=at, statuses=filters.value("status", []), limit=filters.limit()
        )
        legacy = selectors.legacy_followers(microgrid) if rows else {}
        return Response(
            {
                "microgrid_id": microgrid.microgrid_id,
                "at": at.isoformat(),
                "envelopes": [selectors.envelope_dict(e, at=at, legacy=legacy) for e in rows],
            }
        )


class EnvelopeDetailView(ApiView):
    read_roles = READERS

    @api_doc(
        operation_id="operating_envelopes_get",
        summary="One envelope with what it superseded, its transitions and its history",
        parameters=AtQuery.parameters(),
        ok={200: answers.EnvelopeDetail},
        errors={404: "MICROGRID_NOT_FOUND, ENVELOPE_NOT_FOUND", 422: "FIELD_INVALID (at)"},
        tag=TAG,
    )
    def get(self, request, microgrid_id: str, envelope_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        envelope = selectors.envelope_get(microgrid, envelope_id)
        at = query_at(request.query_params)
        return Response(
            selectors.envelope_detail(envelope, at=at, legacy=selectors.legacy_followers(microgrid))
        )


class EnvelopeWithdrawView(ApiView):
    write_roles = SUPPORT_ONLY

    @api_doc(
        operation_id="operating_envelopes_withdraw",
        summary="Withdraw a pending or active envelope (support)",
        request=EnvelopeWithdraw,
        ok={200: (answers.EnvelopeDetail, "The withdrawn envelope")},
        errors={
            400: None,
            404: "MICROGRID_NOT_FOUND, ENVELOPE_NOT_FOUND",
            409: "ENVELOPE_NOT_WITHDRAWABLE",
            413: None,
            422: "FIELD_INVALID",
        },
        tag=TAG,
        idempotent=True,
    )
    def post(self, request, microgrid_id: str, envelope_id: str):
        microgrid = microgrid_get(microgrid_id, user=request.user)
        envelope = selectors.envelope_get(microgrid, envelope_id)
        values = withdraw_input(json_object(request) if request.body else {})
        envelope = services.envelope_withdraw(envelope=envelope, user=request.user, **values)
        envelope = selectors.envelope_get(microgrid, envelope.envelope_id)
        return Response(
            selectors.envelope_detail(
                envelope, at=envelope.withdrawn_at, legacy=selectors.legacy_followers(microgrid)
            )
        )
