"""OSCP outbound on a real Celery worker with embedded beat on the real Redis: the
acknowledgement of a handshake is delivered by the worker after the commit, and the beat's
OSCP tick sends the Capacity Provider its heartbeats (runs in .ci/run)."""

import json

import pytest
from django.utils import timezone

from tests.envelopes.cp_server import start_cp, stop_cp
from tests.integration.test_celery_redis import _wait_for, worker  # noqa: F401 (fixture)

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def test_the_worker_delivers_acknowledgements_and_the_beat_sends_heartbeats(worker, microgrid):  # noqa: F811
    from microgrid.envelopes.models import OscpOutbound
    from microgrid.envelopes.services import oscp_message_receive, oscp_peer_save

    cp = start_cp()
    try:
        peer, _ = oscp_peer_save(
            name="dso-redis",
            token="dso-redis-token-0123456789",
            cp_base_url=cp.base_url,
            cp_token=cp.token,
        )
        oscp_message_receive(
            peer=peer,
            message_type="HANDSHAKE",
            request_id="hs-redis",
            body=json.dumps({"required_behaviour": {"heartbeat_interval": 2}}),
            now=timezone.now(),
        )
        proc, log = worker
        ok = _wait_for(
            lambda: len(cp.got("/heartbeat")) >= 2 and cp.got("/handshake_acknowledgement"), 60
        )
        assert ok, log.read_text()[-4000:]
        assert cp.got("/handshake_acknowledgement")[0].headers["x-correlation-id"] == "hs-redis"
        sent = OscpOutbound.objects.filter(state="SENT")
        assert sent.filter(message_type="HANDSHAKE_ACKNOWLEDGEMENT").count() == 1
        assert sent.filter(message_type="HEARTBEAT").count() >= 2
    finally:
        stop_cp(cp)
