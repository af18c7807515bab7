"""The frozen legacy circuit endpoints and the alias usage report.

Every call to a legacy endpoint leaves one AliasUsage row, whatever its
answer: a successful write records it in its own transaction; every other
answer (reads, refusals of any kind, 401 and 403 included) is recorded here
after the response is made, outside the refused transaction, so the refusal
rolls back and the audit row stays.
"""

from __future__ import annotations

from rest_framework.response import Response

from legacy_circuit import selectors, services
from legacy_circuit.api import serializers as answers
from legacy_circuit.filters import UsageFilter
from legacy_circuit.services import UsageContext
from microgrid.common.api import ApiView, json_object
from microgrid.common.openapi import api_doc
from microgrid.common.roles import INGEST, READERS

TAG = "legacy"
NOT_RESOLVABLE = "CIRCUIT_ALIAS_NOT_RESOLVABLE: details {circuit_id, reason}"
TOU_MAPPING = "TOU_MAPPING_AMBIGUOUS, TOU_SCOPE_UNSUPPORTED"


def _client(request) -> str:
    user = getattr(request, "user", None)
    if user is None or not getattr(user, "is_authenticated", False):
        return ""
    return user.get_username()


class LegacyView(ApiView):
    """Base of the /api/circuit/ endpoints: integration clients (and support), audited."""

    read_roles = INGEST
    write_roles = INGEST
    endpoint = ""

    def usage(self) -> UsageContext:
        if getattr(self, "_usage", None) is None:
            self._usage = UsageContext(
                circuit_id=str(self.kwargs.get("circuit_id", "")),
                endpoint=self.endpoint,
                method=self.request.method,
            )
        return self._usage

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        usage = self.usage()
        if not usage.recorded:
            usage.client = _client(request)
            failure_code = failure_reason = ""
            if response.status_code >= 400 and isinstance(response.data, dict):
                failure_code = str(response.data.get("code") or "")
                details = response.data.get("details")
                if isinstance(details, dict) and isinstance(details.get("reason"), str):
                    failure_reason = details["reason"]
            services.alias_usage_record(
                usage=usage,
                status_code=response.status_code,
                failure_code=failure_code,
                failure_reason=failure_reason,
            )
        return response

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.usage().client = _client(request)


class CircuitView(LegacyView):
    endpoint = selectors.ENDPOINT_CIRCUIT

    @api_doc(
        operation_id="legacy_circuit_get",
        summary="A legacy circuit (frozen contract)",
        ok={200: answers.LegacyCircuit},
        errors={404: "CIRCUIT_NOT_FOUND"},
        tag=TAG,
    )
    def get(self, request, circuit_id: str):
        return Response(
            selectors.circuit_document(selectors.circuit_get(circuit_id, user=request.user))
        )


class RebalanceLoadView(LegacyView):
    endpoint = selectors.ENDPOINT_REBALANCE

    @api_doc(
        operation_id="legacy_circuit_rebalance_load",
        summary="Rebalance a legacy circuit (frozen contract)",
        description="Runs one canonical cycle for the circuit's microgrid and scope. "
        "A request body is not read.",
        ok={200: answers.LegacyRebalance},
        errors={409: NOT_RESOLVABLE, 413: None},
        tag=TAG,
    )
    def post(self, request, circuit_id: str):
        return Response(
            services.circuit_rebalance(circuit_id=circuit_id, usage=self.usage(), user=request.user)
        )


class TouLimitsView(LegacyView):
    endpoint = selectors.ENDPOINT_TOU

    @api_doc(
        operation_id="legacy_circuit_tou_limits_get",
        summary="A legacy circuit's TOU limits (frozen contract)",
        ok={200: answers.LegacyTouLimits},
        errors={409: NOT_RESOLVABLE, 422: TOU_MAPPING},
        tag=TAG,
    )
    def get(self, request, circuit_id: str):
        return Response(
            services.circuit_tou_read(circuit_id=circuit_id, usage=self.usage(), user=request.user)
        )

    @api_doc(
        operation_id="legacy_circuit_tou_limits_set",
        summary="Replace a legacy circuit's TOU limits (frozen contract)",
        request=answers.LegacyTouLimitsInput,
        ok={200: (answers.LegacyTouLimits, "The circuit's TOU limits as written")},
        errors={
            400: None,
            409: NOT_RESOLVABLE,
            413: None,
            422: f"{TOU_MAPPING}, FIELD_INVALID, LIMIT_EXCEEDS_PHYSICAL_RATING, "
            "LIMIT_SCHEDULE_OVERLAP (legacy field names)",
        },
        tag=TAG,
    )
    def post(self, request, circuit_id: str):
        data = json_object(request)
        # The circuit's refusals (409, 422 TOU_*) come before the body's, as the contract has it.
        services.circuit_tou_check(circuit_id=circuit_id, usage=self.usage(), user=request.user)
        tou_limits = answers.tou_limits_input(data, circuit_id=circuit_id)
        return Response(
            services.circuit_tou_replace(
                circuit_id=circuit_id, tou_limits=tou_limits, usage=self.usage(), user=request.user
            )
        )


class AliasUsageView(ApiView):
    read_roles = READERS

    @api_doc(
        operation_id="legacy_alias_usage",
        path_ids=False,
        summary="Legacy alias usage: the newest calls and a per-client, per-circuit summary",
        parameters=UsageFilter.parameters(),
        ok={200: answers.AliasUsageReport},
        errors={422: "FIELD_INVALID naming the bad or unknown parameter"},
        tag=TAG,
    )
    def get(self, request):
        return Response(selectors.usage_report(request.query_params, user=request.user))
