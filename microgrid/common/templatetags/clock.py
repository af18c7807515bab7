"""Times on the Manage pages: the depot's local time with its zone named, UTC on hover.

    {% load clock %}{% depot_time value microgrid.depot.timezone %}

`value` is an aware datetime or an ISO 8601 string (as the JSON documents hold them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django import template
from django.utils.html import format_html

register = template.Library()


def _parse(value) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def _zone(name: str | None):
    try:
        return ZoneInfo(name) if name else UTC
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


@register.simple_tag
def depot_time(value, timezone_name=None, fmt="%Y-%m-%d %H:%M:%S"):
    """<time> in the depot's zone ("2026-12-03 11:15:00 CET"); its title is the UTC time."""
    moment = _parse(value)
    if moment is None:
        return "—"
    local = moment.astimezone(_zone(timezone_name))
    utc = moment.astimezone(UTC)
    # A narrow table cell may wrap between the date and the time, never inside either
    # ("2026-12-" / "03" read as two things).
    date, _, clock = local.strftime(fmt).rpartition(" ")
    return format_html(
        '<time datetime="{}" title="{} UTC">{}<span class="nowrap">{} {}</span></time>',
        utc.isoformat(),
        utc.strftime("%Y-%m-%d %H:%M:%S"),
        format_html('<span class="nowrap">{}</span> ', date) if date else "",
        clock,
        local.tzname() or "UTC",
    )
