"""Reads of the fleet overview: a constant number of queries whatever the fleet or page size.

`fleet_queryset` is the one entry to the fleet: every list of microgrids (the Manage
overview, `GET /api/microgrids/`) starts from it, so that a rule on which microgrids a
user may see is applied in one place.

Columns that other apps add (OCPP stations offline, failed deliveries, vehicles at risk)
go in as one more correlated-subquery annotation in `fleet_queryset` and one more key in
`fleet_row`: still one query per page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import (
    Case,
    Count,
    F,
    IntegerField,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.http import QueryDict
from django.utils import timezone

from balancing.choices import BreachStatus
from balancing.models import Breach
from dispatch.choices import TROUBLE
from dispatch.models import Delivery, DeliveryBatch
from microgrid.common.errors import DomainError, ErrorItem
from microgrid.envelopes.models import OperatingEnvelope
from microgrid.envelopes.selectors import active_filter
from microgrid.fleet.choices import FleetState
from microgrid.fleet.filters import MicrogridFleetFilter
from microgrid.topology import selectors as topology_selectors
from microgrid.topology.diagram import headroom
from microgrid.topology.models import Microgrid
from stations.models import ChargingStation

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
# Worst first when sorted by state.
STATE_RANK = {
    FleetState.FAILSAFE: 0,
    FleetState.CONSTRAINED: 1,
    FleetState.NO_CYCLE: 2,
    FleetState.OK: 3,
}


def _count(qs) -> Subquery:
    return Coalesce(
        Subquery(
            qs.order_by().values("microgrid").annotate(n=Count("pk")).values("n")[:1],
            output_field=IntegerField(),
        ),
        0,
    )


def fleet_queryset(*, user) -> QuerySet[Microgrid]:
    """Every microgrid `user` may see (topology's membership rule), with its latest state
    and live counts annotated."""
    now = timezone.now()
    envelopes = OperatingEnvelope.objects.filter(active_filter(now), microgrid=OuterRef("pk"))
    state = Coalesce("fleet_state__outcome", Value(FleetState.NO_CYCLE))
    return (
        topology_selectors.microgrid_list(user=user)
        .select_related("fleet_state")
        .annotate(
            state=state,
            state_rank=Case(
                *[When(state=Value(s), then=Value(rank)) for s, rank in STATE_RANK.items()],
                output_field=IntegerField(),
            ),
            open_breaches=_count(
                Breach.objects.filter(microgrid=OuterRef("pk"), status=BreachStatus.OPEN)
            ),
            active_envelopes=_count(envelopes),
            envelope_capacity_kw=Subquery(
                envelopes.order_by()
                .values("microgrid")
                .annotate(low=Min("capacity_kw"))
                .values("low")[:1]
            ),
            # OCPP stations: how many, and how many are not connected to a gateway now.
            stations=_count(ChargingStation.objects.filter(microgrid=OuterRef("pk"))),
            stations_offline=_count(
                ChargingStation.objects.filter(microgrid=OuterRef("pk"), connected=False)
            ),
            # The latest cycle's setpoints that did not arrive: FAILED (retrying), REJECTED
            # or EXPIRED, as the card's dispatch block counts them.
            # (An OCPP charger's row, or every charger of a batch in trouble.)
            failed_deliveries=_count(
                Delivery.objects.filter(
                    microgrid=OuterRef("pk"),
                    cycle__cycle_id=OuterRef("fleet_state__cycle_id"),
                    status__in=TROUBLE,
                )
            )
            + Coalesce(
                Subquery(
                    DeliveryBatch.objects.filter(
                        microgrid=OuterRef("pk"),
                        cycle__cycle_id=OuterRef("fleet_state__cycle_id"),
                        status__in=TROUBLE,
                    )
                    .order_by()
                    .values("microgrid")
                    .annotate(n=Sum(F("sent_count") + F("unchanged_count")))
                    .values("n")[:1],
                    output_field=IntegerField(),
                ),
                0,
            ),
        )
    )


def _invalid(form) -> DomainError:
    return DomainError.from_errors(
        [
            ErrorItem(
                "FIELD_INVALID", f"{field}: {' '.join(str(m) for m in messages)}", field=field
            )
            for field, messages in form.errors.items()
        ]
    )


def _positive(params, name: str, default: int, maximum: int | None = None) -> int:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    ok = isinstance(raw, str) and raw.isascii() and raw.isdigit() and int(raw) >= 1
    if ok and maximum is not None:
        ok = int(raw) <= maximum
    if not ok:
        bound = f"from 1 to {maximum}" if maximum else "of at least 1"
        raise DomainError.from_errors(
            [ErrorItem("FIELD_INVALID", f"{name} must be a whole number {bound}", field=name)]
        )
    return int(raw)


def _without_empty(params) -> QueryDict:
    """A form's "any" options send `state=` and the like: an empty value is no filter."""
    out = QueryDict(mutable=True)
    items = params.lists() if hasattr(params, "lists") else ((k, [v]) for k, v in params.items())
    for key, values in items:
        kept = [v for v in values if v not in ("", None)]
        if kept:
            out.setlist(key, kept)
    return out


@dataclass
class FleetPage:
    rows: list[Microgrid]
    count: int
    page: int
    page_size: int
    pages: int
    counts: dict[str, int]
    filterset: MicrogridFleetFilter


def fleet_page(params, *, user) -> FleetPage:
    """One page of the filtered, sorted fleet, and the counts per state (three queries).

    The counts per state ignore the state filter (so each count says how many a click
    on it would show) but honour every other filter.
    """
    params = _without_empty(params)
    page = _positive(params, "page", 1)
    page_size = _positive(params, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    base = fleet_queryset(user=user)
    filterset = MicrogridFleetFilter(params, queryset=base)
    if not filterset.is_valid():
        raise _invalid(filterset.form)
    unfiltered_state = params.copy()
    unfiltered_state.pop("state", None)
    facet = MicrogridFleetFilter(unfiltered_state, queryset=base).qs
    totals = facet.aggregate(
        all=Count("pk"),
        with_open_breaches=Count("pk", filter=Q(open_breaches__gt=0)),
        **{s: Count("pk", filter=Q(state=s)) for s in FleetState.values},
    )
    qs = filterset.qs
    chosen = set(params.getlist("state"))
    count = sum(totals[s] for s in chosen) if chosen else totals["all"]
    pages = max(1, -(-count // page_size))
    start = (page - 1) * page_size
    rows = list(qs[start : start + page_size]) if start < count else []
    return FleetPage(
        rows=rows,
        count=count,
        page=page,
        page_size=page_size,
        pages=pages,
        counts=totals,
        filterset=filterset,
    )


def fleet_row(m: Microgrid) -> dict[str, Any]:
    """One microgrid of the fleet as `GET /api/microgrids/` returns it."""
    state = getattr(m, "fleet_state", None)
    return {
        "microgrid_id": m.microgrid_id,
        "name": m.name,
        "depot_id": m.depot.depot_id,
        "depot_name": m.depot.name,
        "timezone": m.depot.timezone,
        "topology_version": m.topology_version,
        "updated_at": m.updated_at.isoformat() if m.updated_at else None,
        "enabled": m.enabled,
        "state": m.state,
        "latest_cycle": {
            "cycle_id": state.cycle_id,
            "seq": state.cycle_seq,
            "completed_at": state.completed_at.isoformat(),
            "trigger": {"type": state.trigger_type},
            "outcome": state.outcome,
            "source_mode": state.source_mode,
            "reason_codes": state.reason_codes,
        }
        if state
        else None,
        "root": {
            "node_id": state.root_node_id,
            "load_kw": state.root_load_kw,
            "effective_limit_kw": state.root_limit_kw,
            "load_pct": state.root_load_pct,
        }
        if state and state.root_node_id
        else None,
        "open_breaches": m.open_breaches,
        "active_envelopes": m.active_envelopes,
        "envelope_capacity_kw": m.envelope_capacity_kw,
        "stations": m.stations,
        "stations_offline": m.stations_offline,
        "failed_deliveries": m.failed_deliveries,
        "vehicles_at_risk": state.vehicles_at_risk if state else None,
    }


def headroom_class(pct: float | None) -> str:
    """The colour class of a load at `pct` of its limit: ok, near (>= 90 %), over (> 100 %)."""
    return headroom(pct) or "unknown"
