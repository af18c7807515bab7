"""The filters of the microgrid list (see common.filters)."""

from __future__ import annotations

from microgrid.common.filters import FilterSet, IdFilter


class MicrogridFilter(FilterSet):
    depot_id = IdFilter("depot__depot_id", "only this depot's")
