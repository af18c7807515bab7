"""The audit of access refusals: a request that named a microgrid (or a legacy circuit)
outside the caller's memberships.

The app that knows microgrids decides the refusal and notes it here; the
middleware writes the notes after the response, outside whatever transaction the
refused request rolled back, so the refusal leaves its row and nothing else.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass

from django.utils import timezone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefusalNote:
    code: str
    microgrid_id: str = ""
    circuit_id: str = ""


_notes: ContextVar[list[RefusalNote] | None] = ContextVar("access_refusals", default=None)


def refusal_note(*, code: str, microgrid_id: str = "", circuit_id: str = "") -> None:
    """Note that this request was refused `code` for a microgrid or circuit it may not see."""
    notes = _notes.get()
    note = RefusalNote(code=code, microgrid_id=microgrid_id, circuit_id=circuit_id)
    if notes is None:
        # Outside a request (a task, a command) nobody is refused: callers there are trusted.
        log.warning("access refusal outside a request: %s", note)
        return
    if note not in notes:
        notes.append(note)


class AccessRefusalMiddleware:
    """Collects the refusal notes of one request and writes them as AccessRefusal rows."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _notes.set([])
        try:
            response = self.get_response(request)
            notes = _notes.get()
        finally:
            _notes.reset(token)
        if notes:
            access_refusals_record(request=request, notes=notes)
        return response


def access_refusals_record(*, request, notes: list[RefusalNote]) -> None:
    from microgrid.common.models import AccessRefusal

    user = getattr(request, "user", None)
    authenticated = user is not None and getattr(user, "is_authenticated", False)
    now = timezone.now()
    AccessRefusal.objects.bulk_create(
        AccessRefusal(
            user=user if authenticated else None,
            username=user.get_username() if authenticated else "",
            microgrid_id=note.microgrid_id[:64],
            circuit_id=note.circuit_id[:200],
            method=request.method[:10],
            path=request.path[:500],
            code=note.code,
            at=now,
        )
        for note in notes
    )
