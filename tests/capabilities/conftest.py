"""Helpers for capability tests: binding and reporting through the services, row counts."""

from datetime import UTC, datetime, timedelta

import pytest

from microgrid.capabilities.api.serializers import bind_input, event_input

# A fixed clock: services take `now`, so no test depends on the wall clock or sleeps.
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)

MICROGRID = {"type": "MICROGRID"}


def node(node_id: str) -> dict:
    return {"type": "NODE", "node_id": node_id}


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


@pytest.fixture
def bind(microgrid):
    from microgrid.capabilities.services import capability_binding_create

    def make(source, scope, capability_type="LOAD_MANAGEMENT", now=NOW):
        return capability_binding_create(
            microgrid=microgrid,
            **bind_input(
                {"capability_type": capability_type, "scope": scope, "source_device_id": source}
            ),
            now=now,
        ).binding

    return make


@pytest.fixture
def report(microgrid):
    from microgrid.capabilities.services import capability_event_record

    def make(
        source,
        scope,
        state="AVAILABLE",
        *,
        event_ref=None,
        observed_at=NOW,
        capability_type="LOAD_MANAGEMENT",
        now=None,
        detail=None,
    ):
        return capability_event_record(
            microgrid=microgrid,
            **event_input(
                {
                    "capability_type": capability_type,
                    "scope": scope,
                    "source_device_id": source,
                    "event_ref": event_ref or f"{source}-{state}-{observed_at.isoformat()}",
                    "state": state,
                    "observed_at": observed_at.isoformat(),
                    "detail": detail,
                }
            ),
            now=now or observed_at,
        )

    return make


@pytest.fixture
def row_counts():
    """Bindings, binding history rows and events: nothing may change on a refusal."""
    from microgrid.capabilities.models import CapabilityBinding, CapabilityStatusEvent

    def counts():
        return (
            CapabilityBinding.objects.count(),
            CapabilityBinding.history.count(),
            CapabilityStatusEvent.objects.count(),
        )

    return counts
