"""The microgrid list's filters: one FilterSet for the Manage overview and `GET /api/microgrids/`."""

from __future__ import annotations

import django_filters
from django.db.models import F, Q

from balancing.choices import SourceMode
from microgrid.fleet.choices import FleetState
from microgrid.topology.models import Microgrid

# sort value -> ORDER BY; microgrid_id always breaks ties, so pages never overlap.
SORTS = {
    "microgrid_id": (F("microgrid_id").asc(),),
    "name": (F("name").asc(),),
    "-name": (F("name").desc(),),
    "depot": (F("depot__name").asc(),),
    "load": (F("fleet_state__root_load_pct").asc(nulls_first=True),),
    "-load": (F("fleet_state__root_load_pct").desc(nulls_last=True),),
    "breaches": (F("open_breaches").asc(),),
    "-breaches": (F("open_breaches").desc(),),
    "last_cycle": (F("fleet_state__completed_at").asc(nulls_first=True),),
    "-last_cycle": (F("fleet_state__completed_at").desc(nulls_last=True),),
    "state": (F("state_rank").asc(),),
}
SORT_LABELS = {
    "microgrid_id": "Microgrid id",
    "name": "Name (A-Z)",
    "-name": "Name (Z-A)",
    "depot": "Depot",
    "-load": "Load (highest first)",
    "load": "Load (lowest first)",
    "-breaches": "Open breaches (most first)",
    "breaches": "Open breaches (fewest first)",
    "-last_cycle": "Last cycle (newest first)",
    "last_cycle": "Last cycle (oldest first)",
    "state": "State (worst first)",
}
assert set(SORT_LABELS) == set(SORTS)


class MicrogridFleetFilter(django_filters.FilterSet):
    """Filters of the fleet overview. The queryset must come from `selectors.fleet_queryset`
    (it annotates `state`, `state_rank` and `open_breaches`)."""

    q = django_filters.CharFilter(method="search", max_length=200, label="Search")
    state = django_filters.MultipleChoiceFilter(choices=FleetState.choices, label="State")
    source_mode = django_filters.ChoiceFilter(
        field_name="fleet_state__source_mode", choices=SourceMode.choices, label="Source mode"
    )
    breaches = django_filters.ChoiceFilter(
        method="filter_breaches",
        choices=[("open", "With open breaches"), ("none", "Without open breaches")],
        label="Breaches",
    )
    depot_id = django_filters.CharFilter(field_name="depot__depot_id", max_length=64)
    # A ChoiceFilter, not a BooleanFilter: that one reads "perhaps" as no filter at all.
    enabled = django_filters.ChoiceFilter(
        method="filter_enabled", choices=[("true", "on"), ("false", "off")], label="Cycles"
    )
    sort = django_filters.ChoiceFilter(
        method="order", choices=list(SORT_LABELS.items()), label="Sort", empty_label=None
    )

    class Meta:
        model = Microgrid
        fields = ["q", "state", "source_mode", "breaches", "depot_id", "enabled", "sort"]

    def search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(
            Q(microgrid_id__icontains=value)
            | Q(name__icontains=value)
            | Q(depot__name__icontains=value)
            | Q(depot__depot_id__icontains=value)
        )

    def filter_breaches(self, queryset, name, value):
        return (
            queryset.filter(open_breaches__gt=0)
            if value == "open"
            else queryset.filter(open_breaches=0)
        )

    def filter_enabled(self, queryset, name, value):
        return queryset.filter(enabled=value == "true")

    def order(self, queryset, name, value):
        return queryset.order_by(*SORTS[value], "microgrid_id")

    @property
    def qs(self):
        qs = super().qs
        if not self.form.cleaned_data.get("sort"):
            qs = qs.order_by("microgrid_id")
        return qs
