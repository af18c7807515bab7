"""Credentials: stored hashed, revocable, and never written to a log, a crash report or the database."""

from __future__ import annotations

import io
import logging
import re

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

PEER_TOKEN = "peer-secret-token-for-logs-0123"
PASSWORD = "pw-Secret-123"  # conftest's make_user default


def api(key: str | None) -> APIClient:
    client = APIClient(raise_request_exception=False)
    if key is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def database_text() -> str:
    """Every row of every table (history tables and axes' records included) as text."""
    out = io.StringIO()
    call_command("dumpdata", stdout=out)
    return out.getvalue()


@pytest.fixture
def peer(microgrid):
    from microgrid.envelopes.services import oscp_group_binding_save, oscp_peer_save

    peer, _ = oscp_peer_save(name="dso-logs", token=PEER_TOKEN, heartbeat_interval_s=60)
    oscp_group_binding_save(
        peer=peer, group_id="GRP-L", microgrid=microgrid, scope={"type": "MICROGRID"}
    )
    return peer


def oscp_heartbeat(token: str, request_id: str):
    return api(token).post(
        "/oscp/fp/2.0/heartbeat",
        {"offline_mode_at": "2030-01-01T00:00:00+00:00"},
        format="json",
        HTTP_X_REQUEST_ID=request_id,
    )


# -- stored hashed ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_no_table_holds_an_api_key_or_a_peer_token_in_clear(make_user, peer):
    from microgrid.common.models import ApiToken, hash_token

    token, key = ApiToken.issue(user=make_user("operator"))
    assert api(key).get("/api/microgrids/").status_code == 200
    assert oscp_heartbeat(PEER_TOKEN, "hb-1").status_code == 204
    dump = database_text()
    assert key not in dump
    assert PEER_TOKEN not in dump
    assert token.key_hash == hash_token(key)
    assert peer.token_hash == hash_token(PEER_TOKEN)


@pytest.mark.django_db
def test_no_table_holds_a_password_tried_at_the_login_form(make_user):
    from django.test import Client

    make_user("operator")
    Client().post("/accounts/login/", {"username": "operator-user", "password": "Wrong-guess-42"})
    Client().post("/accounts/login/", {"username": "operator-user", "password": PASSWORD})
    dump = database_text()
    assert "Wrong-guess-42" not in dump
    assert PASSWORD not in dump


# -- revocation ------------------------------------------------------------------------------------


def run_revoke(*args) -> str:
    out = io.StringIO()
    call_command("revoke_api_token", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_revoke_api_token_by_prefix_refuses_that_key_at_once_and_leaves_the_others(make_user):
    from microgrid.common.models import ApiToken

    user = make_user("operator")
    token, key = ApiToken.issue(user=user)
    _, other_key = ApiToken.issue(user=user)
    assert api(key).get("/api/microgrids/").status_code == 200
    out = run_revoke(token.key_prefix)
    assert token.key_prefix in out and key not in out
    refused = api(key).get("/api/microgrids/")
    assert (refused.status_code, refused.json()["code"]) == (401, "NOT_AUTHENTICATED")
    assert api(other_key).get("/api/microgrids/").status_code == 200
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert token.history.first().revoked_at == token.revoked_at  # the revocation is audited


@pytest.mark.django_db
def test_revoke_api_token_by_username_revokes_every_key_of_that_user_only(make_user):
    from microgrid.common.models import ApiToken

    keys = [ApiToken.issue(user=make_user("integration"))[1] for _ in range(2)]
    _, bystander = ApiToken.issue(user=make_user("support"))
    out = run_revoke("integration-user")
    assert out.count("revoked") == 2
    for key in keys:
        assert api(key).get("/api/circuit/CIR-1").status_code == 401
    assert api(bystander).get("/api/microgrids/").status_code == 200


@pytest.mark.django_db
def test_revoke_api_token_takes_a_whole_leaked_key(make_user):
    from microgrid.common.models import ApiToken

    _, key = ApiToken.issue(user=make_user("operator"))
    run_revoke(key)
    assert api(key).get("/api/microgrids/").status_code == 401


@pytest.mark.django_db
def test_revoke_api_token_refuses_a_target_that_matches_nothing_or_is_ambiguous(make_user):
    from microgrid.common.models import ApiToken

    with pytest.raises(CommandError, match="no API token"):
        run_revoke("nobody-at-all")
    # A username that is also another user's key prefix: say which is meant.
    token, key = ApiToken.issue(user=make_user("operator"))
    make_user("support", username=token.key_prefix)
    ApiToken.issue(user=make_user("support", username=token.key_prefix))
    with pytest.raises(CommandError, match="--by"):
        run_revoke(token.key_prefix)
    assert api(key).get("/api/microgrids/").status_code == 200
    run_revoke(token.key_prefix, "--by", "prefix")
    assert api(key).get("/api/microgrids/").status_code == 401


@pytest.mark.django_db
def test_revoking_twice_is_harmless(make_user):
    from microgrid.common.models import ApiToken

    token, _ = ApiToken.issue(user=make_user("operator"))
    run_revoke(token.key_prefix)
    assert "already revoked" in run_revoke(token.key_prefix)


@pytest.mark.django_db
def test_admin_revokes_api_tokens_and_a_revoked_token_cannot_be_revived_there(make_user):
    from django.test import Client

    from microgrid.common.models import ApiToken

    token, key = ApiToken.issue(user=make_user("operator"))
    admin = Client()
    admin.force_login(make_user("support"))
    response = admin.post(
        "/admin/common/apitoken/",
        {"action": "revoke", "_selected_action": [token.pk]},
    )
    assert response.status_code == 302
    assert api(key).get("/api/microgrids/").status_code == 401
    # The change form shows revoked_at and the user read-only: a post cannot clear them.
    other = make_user("support", username="support-2")
    admin.post(
        f"/admin/common/apitoken/{token.pk}/change/",
        {"name": "renamed", "revoked_at_0": "", "revoked_at_1": "", "user": other.pk},
    )
    token.refresh_from_db()
    assert token.name == "renamed"
    assert token.revoked_at is not None
    assert token.user.username == "operator-user"
    assert api(key).get("/api/microgrids/").status_code == 401


@pytest.mark.django_db
def test_admin_deactivates_oscp_peers_and_their_token_is_refused(peer, make_user):
    from django.test import Client

    assert oscp_heartbeat(PEER_TOKEN, "hb-1").status_code == 204
    admin = Client()
    admin.force_login(make_user("support"))
    response = admin.post(
        "/admin/envelopes/oscppeer/", {"action": "deactivate", "_selected_action": [peer.pk]}
    )
    assert response.status_code == 302
    refused = oscp_heartbeat(PEER_TOKEN, "hb-2")
    assert (refused.status_code, refused.json()["code"]) == (401, "NOT_AUTHENTICATED")
    peer.refresh_from_db()
    assert peer.active is False
    assert peer.history.first().history_user.username == "support-user"


# -- never logged ----------------------------------------------------------------------------------

FORMAT_FIELD = re.compile(r"%\((\w+)\)")
# What a log line may show: time, level, logger, process and task identity, the message.
PLAIN_FIELDS = {
    "asctime",
    "levelname",
    "name",
    "message",
    "processName",
    "process",
    "threadName",
    "task_name",
    "task_id",
}


def test_the_django_and_celery_log_formats_show_no_request_or_headers():
    from django.conf import settings

    from microgrid.celery import app

    formats = [f["format"] for f in settings.LOGGING["formatters"].values()]
    formats += [app.conf.worker_log_format, app.conf.worker_task_log_format]
    for fmt in formats:
        assert set(FORMAT_FIELD.findall(fmt)) <= PLAIN_FIELDS, fmt


@pytest.fixture
def everything_logged(caplog, settings):
    """Every logger at DEBUG, SQL included, and crash reports mailed to an admin."""
    from django.db import connection

    caplog.set_level(logging.DEBUG)
    for name in ("django", "django.db.backends", "axes", "celery"):
        caplog.set_level(logging.DEBUG, logger=name)
    settings.ADMINS = [("Ops", "ops@example.com")]
    connection.force_debug_cursor = True
    yield caplog
    connection.force_debug_cursor = False


def formatted(records) -> str:
    """The records as the project's configured formatter writes them, tracebacks included."""
    from django.conf import settings

    formatter = logging.Formatter(settings.LOGGING["formatters"]["plain"]["format"])
    return "\n".join(formatter.format(record) for record in records)


@pytest.mark.django_db
def test_keys_tokens_and_passwords_never_reach_the_logs_or_crash_reports(
    everything_logged, make_user, peer, monkeypatch
):
    from django.test import Client

    from microgrid.common.models import ApiToken

    token, key = ApiToken.issue(user=make_user("operator"))
    _, revoked_key = ApiToken.issue(user=make_user("integration"))
    run_revoke("integration-user")
    unknown_key = "f" * 40
    wrong_password = "Wrong-guess-42"
    answers = [
        api(key).get("/api/microgrids/").status_code,  # authenticated
        api(revoked_key).get("/api/circuit/CIR-1").status_code,  # revoked
        api(unknown_key).get("/api/microgrids/").status_code,  # unknown
        api(key).post("/api/microgrids/", {}, format="json").status_code,  # wrong role
        oscp_heartbeat(PEER_TOKEN, "hb-1").status_code,  # a peer
        oscp_heartbeat(key, "hb-2").status_code,  # an API key on OSCP
    ]
    login = Client()
    answers.append(
        login.post(
            "/accounts/login/", {"username": "operator-user", "password": wrong_password}
        ).status_code
    )
    answers.append(
        login.post("/accounts/login/", {"username": "operator-user", "password": PASSWORD})[
            "Location"
        ]
    )
    # A crash while a key is on the request: logged with its traceback and mailed to admins.
    monkeypatch.setattr(
        "microgrid.topology.api.views.selectors.microgrid_list",
        lambda **kw: 1 / 0,
    )
    answers.append(api(key).get("/api/microgrids/").status_code)
    assert answers == [200, 401, 401, 403, 204, 401, 200, "/manage/microgrids/", 500]

    text = formatted(everything_logged.records)
    assert "ZeroDivisionError" in text  # the crash was logged ...
    assert any(m.to[0] == "ops@example.com" for m in mail.outbox)  # ... and mailed
    reports = "\n".join(f"{m.subject}\n{m.body}" for m in mail.outbox)
    assert "HTTP_AUTHORIZATION" in reports  # the report lists the header, masked
    assert token.key_hash in text  # SQL is logged, with the hash only
    for secret in (key, revoked_key, unknown_key, PEER_TOKEN, wrong_password, PASSWORD):
        assert secret not in text, secret
        assert secret not in reports, secret
