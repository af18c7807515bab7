"""URL converters: ids may contain dots (`MG.NORTH-1`), which DRF routers refuse."""

from microgrid.common.fields import ID_PATTERN


class IdConverter:
    regex = ID_PATTERN

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value
