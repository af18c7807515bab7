"""The setpoints API's filter (a FilterSet, as every filtering list; see common.filters)."""

from microgrid.common.filters import FilterSet, IdFilter, keep


class SetpointFilter(FilterSet):
    asset_id = IdFilter(None, method=keep, description="only this charger")
