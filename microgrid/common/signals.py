"""The one extension mechanism between apps: Django signals, and two ways to send them.

A lower app never imports a higher one (the import-linter contracts in pyproject.toml). When
a lower app needs something from the apps above it, it declares a `Signal` in its own
`signals.py` and sends it; the higher apps connect receivers in their `AppConfig.ready()`:

- a contribution (a card section, a tab, a constraint on the effective limits, what still
  points at a node): `collect(signal, ...)` sends it and returns every receiver's answer;
  a receiver that fails makes the caller fail, as a bug in a provider must not go unseen;
- a notice of a change (a limit, an envelope, a capability changed): `send_on_commit(signal,
  ...)` sends it after the transaction commits; a receiver that fails is logged and neither
  stops the others nor undoes the write.

Receivers are module-level functions connected with a `dispatch_uid`, so connecting twice
(a second `ready()` in tests) connects once. The signals of the product are listed in the
spec (section 4.6 for the change notices).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.dispatch import Signal

log = logging.getLogger(__name__)


def collect(signal: Signal, **kwargs: Any) -> list[Any]:
    """Every receiver's answer, in the order they were connected (apps' INSTALLED_APPS order)."""
    return [answer for _, answer in signal.send(sender=None, **kwargs)]


def send_now(signal: Signal, **kwargs: Any) -> None:
    """Send a notice now; failures are logged, not raised (see `send_on_commit`)."""
    for receiver, answer in signal.send_robust(sender=None, **kwargs):
        if isinstance(answer, Exception):
            log.error(
                "receiver %r of %s failed", receiver, kwargs, exc_info=(type(answer), answer, None)
            )


def send_on_commit(signal: Signal, **kwargs: Any) -> None:
    """Send a notice once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: send_now(signal, **kwargs), robust=True)
