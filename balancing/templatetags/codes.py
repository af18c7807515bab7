"""Render codes verbatim with their plain-language label and a colour by meaning."""

from django import template
from django.utils.html import format_html, format_html_join

from balancing.choices import CODE_LABELS

register = template.Library()

TONE = {
    "OK": "ok",
    "MEASURED": "ok",
    "DEMAND_MET": "ok",
    "RESOLVED": "ok",
    "CONSTRAINED": "warn",
    "FALLBACK_DERIVED": "warn",
    "TELEMETRY_FALLBACK": "warn",
    "MIN_POWER_UNSERVED": "warn",
    "OPEN": "bad",
    "FAILSAFE": "bad",
    "FAILSAFE_TELEMETRY_UNAVAILABLE": "bad",
    "EXTERNAL_CONTROL": "info",
    # setpoint deliveries (dispatch)
    "ACCEPTED": "ok",
    "UNCHANGED": "ok",
    "PENDING": "info",
    "SENT": "info",
    "SUPERSEDED": "muted",
    "FAILED": "bad",
    "REJECTED": "bad",
    "EXPIRED": "bad",
}


@register.simple_tag
def code(value):
    if value in (None, ""):
        return ""
    tone = TONE.get(value, "bad" if str(value).startswith("BREACH_") else "muted")
    return format_html(
        '<span class="badge badge-{}" title="{}"><span class="code">{}</span></span>',
        tone,
        CODE_LABELS.get(value, value),
        value,
    )


@register.simple_tag
def codes(values):
    if not values:
        return format_html('<span class="muted">{}</span>', "—")
    return format_html_join(" ", "{}", ((code(v),) for v in values))


@register.filter
def label(value):
    return CODE_LABELS.get(value, "")


@register.filter
def when(value):
    """An ISO timestamp (as stored in cycle documents) shown as 'YYYY-MM-DD HH:MM:SS UTC'."""
    from datetime import UTC, datetime

    if not value:
        return ""
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return value
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.strftime("%Y-%m-%d %H:%M:%S UTC")
