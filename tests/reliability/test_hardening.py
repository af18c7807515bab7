"""Login brute-force protection, security headers, production settings and no secrets in git."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

ROOT = Path(settings.BASE_DIR)
PASSWORD = "pw-Secret-123"  # conftest's make_user default
# Documentation addresses (RFC 5737): only a value in REMOTE_ADDR, no traffic goes anywhere.
HOME_IP, OTHER_IP = "192.0.2.10", "192.0.2.20"


def login(username: str, password: str, ip: str):
    client = Client(REMOTE_ADDR=ip)
    response = client.post("/accounts/login/", {"username": username, "password": password})
    return response, "_auth_user_id" in client.session


# -- brute force -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_after_the_failure_limit_the_right_password_is_refused_for_that_user_and_address(
    make_user,
):
    make_user("operator")
    limit = settings.AXES_FAILURE_LIMIT
    assert limit >= 3
    for _ in range(limit - 1):
        response, logged_in = login("operator-user", "wrong-guess", HOME_IP)
        assert (response.status_code, logged_in) == (200, False)  # the form again, with an error
    response, _ = login("operator-user", "wrong-guess", HOME_IP)  # the limit-th failure
    assert response.status_code == 429
    response, logged_in = login("operator-user", PASSWORD, HOME_IP)
    assert (response.status_code, logged_in) == (429, False)
    assert "Login locked" in response.content.decode()


@pytest.mark.django_db
def test_a_successful_login_clears_the_failures_before_it(make_user):
    make_user("operator")
    for _ in range(2):
        for _ in range(settings.AXES_FAILURE_LIMIT - 1):
            login("operator-user", "wrong-guess", HOME_IP)
        assert login("operator-user", PASSWORD, HOME_IP)[1] is True


@pytest.mark.django_db
def test_a_lockout_holds_only_that_user_from_that_address(make_user):
    make_user("operator")
    make_user("support")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login("operator-user", "wrong-guess", HOME_IP)
    assert login("operator-user", PASSWORD, HOME_IP)[1] is False
    assert login("operator-user", PASSWORD, OTHER_IP)[1] is True  # the user from elsewhere
    assert login("support-user", PASSWORD, HOME_IP)[1] is True  # another user from there


@pytest.mark.django_db
def test_failures_below_the_limit_do_not_lock_the_user_out(make_user):
    make_user("operator")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login("operator-user", "wrong-guess", HOME_IP)
    assert login("operator-user", PASSWORD, HOME_IP)[1] is True


@pytest.mark.django_db
def test_the_admin_login_counts_towards_the_same_lockout(make_user):
    make_user("support")
    client = Client(REMOTE_ADDR=HOME_IP)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/admin/login/", {"username": "support-user", "password": "wrong-guess"})
    assert login("support-user", PASSWORD, HOME_IP)[1] is False


PROXY_IP = "198.51.100.1"


def login_via_proxy(username: str, password: str, forwarded_for: str):
    client = Client(REMOTE_ADDR=PROXY_IP, HTTP_X_FORWARDED_FOR=forwarded_for)
    response = client.post("/accounts/login/", {"username": username, "password": password})
    return response, "_auth_user_id" in client.session


@pytest.mark.django_db
def test_behind_a_trusted_proxy_a_lockout_holds_the_forwarded_client_only(make_user, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    make_user("operator")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login_via_proxy("operator-user", "wrong-guess", HOME_IP)
    assert login_via_proxy("operator-user", PASSWORD, HOME_IP)[1] is False
    assert login_via_proxy("operator-user", PASSWORD, OTHER_IP)[1] is True


@pytest.mark.django_db
def test_a_client_cannot_escape_a_lockout_by_prepending_addresses(make_user, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    make_user("operator")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login_via_proxy("operator-user", "wrong-guess", HOME_IP)
    # The proxy appends the address it saw; what the client wrote before it is ignored.
    assert login_via_proxy("operator-user", PASSWORD, f"{OTHER_IP}, {HOME_IP}")[1] is False


@pytest.mark.django_db
def test_without_trusted_proxies_a_forwarded_header_changes_nothing(make_user):
    make_user("operator")
    for i in range(settings.AXES_FAILURE_LIMIT):
        login_via_proxy("operator-user", "wrong-guess", f"192.0.2.{100 + i}")
    assert login_via_proxy("operator-user", PASSWORD, OTHER_IP)[1] is False


@pytest.mark.parametrize(
    "count, forwarded, expected",
    [
        (0, "192.0.2.10", PROXY_IP),
        (1, "192.0.2.10", "192.0.2.10"),
        (1, "10.0.0.9, 192.0.2.10", "192.0.2.10"),
        (2, "192.0.2.10, 10.0.0.2", "192.0.2.10"),
        (2, "10.0.0.2", PROXY_IP),  # fewer hops than proxies
        (1, "not-an-address", PROXY_IP),
        (1, "", PROXY_IP),
        (1, " 2001:db8::1 ", "2001:db8::1"),
    ],
)
def test_the_client_address_is_counted_from_the_right(count, forwarded, expected, settings):
    from django.test import RequestFactory

    from microgrid.common.client_ip import client_ip

    settings.TRUSTED_PROXY_COUNT = count
    request = RequestFactory().get("/", REMOTE_ADDR=PROXY_IP, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected


# -- security headers ------------------------------------------------------------------------------

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


@pytest.mark.django_db
def test_every_surface_sends_the_security_headers(operator_client, microgrid):
    from rest_framework.test import APIClient

    answers = {
        "login page": Client().get("/accounts/login/"),
        "Manage page": operator_client.get("/manage/microgrids/MG.NORTH-1/"),
        "API refusal": APIClient().get("/api/microgrids/"),
        "OSCP refusal": APIClient().post("/oscp/fp/2.0/heartbeat", {}, format="json"),
        "health": Client().get("/healthz"),
    }
    for what, response in answers.items():
        for header, value in HEADERS.items():
            assert response.get(header) == value, (what, header)


def production_env(tmp_path) -> dict[str, str]:
    """A deployment's environment: only what runs Python, plus the production settings.

    Nothing else leaks in from the test run (e.g. the browser tests'
    DJANGO_ALLOW_ASYNC_UNSAFE, which check --deploy rightly refuses).
    """
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env.update(
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="example.com",
        MICROGRID_VAR_DIR=str(tmp_path / "var"),
        DJANGO_SETTINGS_MODULE="microgrid.settings",
    )
    return env


PROBE = """
import json, sys, django
django.setup()
from django.conf import settings
from django.test import Client

client = Client(HTTP_HOST="example.com")
plain = client.get("/accounts/login/")
secure = client.get("/accounts/login/", secure=True)
cookie = secure.cookies["csrftoken"]
print(json.dumps({
    "plain": [plain.status_code, plain.get("Location")],
    "secure": secure.status_code,
    "hsts": secure.get("Strict-Transport-Security"),
    "csrf_cookie": {"secure": bool(cookie["secure"]), "samesite": cookie["samesite"]},
    "session_cookie": {"secure": settings.SESSION_COOKIE_SECURE,
                       "httponly": settings.SESSION_COOKIE_HTTPONLY},
    "headers": {h: secure.get(h) for h in json.loads(sys.argv[1])},
    "debug": settings.DEBUG,
    "browsable_api": any("Browsable" in r for r in settings.REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"]),
}))
"""


def test_with_debug_off_https_is_enforced_with_hsts_and_secure_cookies(tmp_path):
    run = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(list(HEADERS))],
        cwd=ROOT,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["plain"] == [301, "https://example.com/accounts/login/"]
    assert seen["secure"] == 200
    assert seen["hsts"] == "max-age=31536000; includeSubDomains; preload"
    assert seen["csrf_cookie"] == {"secure": True, "samesite": "Lax"}
    assert seen["session_cookie"] == {"secure": True, "httponly": True}
    assert seen["headers"] == HEADERS
    assert seen["debug"] is False
    assert seen["browsable_api"] is False


def test_check_deploy_is_clean_in_production_mode(tmp_path):
    run = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_production_mode_refuses_to_start_without_a_secret_key(tmp_path):
    env = production_env(tmp_path)
    del env["SECRET_KEY"]
    run = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert "SECRET_KEY must be set" in run.stderr


# -- no secrets in the repository ------------------------------------------------------------------

SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "Stripe live key": re.compile(r"\b[rs]k_live_[A-Za-z0-9]{16,}"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "API key in a header": re.compile(r"Token [0-9a-f]{40}\b"),
    "password in a URL": re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:(?P<value>[^/\s@'\"]+)@"),
    "SECRET_KEY value": re.compile(r"SECRET_KEY\s*[=:]\s*['\"](?P<value>[^'\"]+)['\"]"),
}
ALLOWED_VALUES = {
    "password in a URL": {"pass", "password"},  # placeholders in documentation
    "SECRET_KEY value": {"dev-only-insecure-key-never-used-in-production-0123456789abcdef"},
}
SECRET_FILES = re.compile(
    r"(^|/)(\.env(\..*)?|id_[rd]sa|id_ecdsa|id_ed25519|.*\.(pem|key|p12|pfx))$"
)


def tracked_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.fail("not a git checkout: the secrets scan needs `git ls-files`")
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    )
    return [name for name in listing.stdout.decode().split("\0") if name]


def secret_findings(name: str, text: str) -> list[str]:
    found = []
    for what, pattern in SECRET_PATTERNS.items():
        for match in pattern.finditer(text):
            value = match.groupdict().get("value")
            if value is not None and value in ALLOWED_VALUES.get(what, ()):
                continue
            line = text.count("\n", 0, match.start()) + 1
            found.append(f"{name}:{line}: {what}")
    return found


def test_the_secret_patterns_catch_what_they_are_for():
    samples = {
        "-----BEGIN RSA " + "PRIVATE KEY-----": "private key",
        "-----BEGIN " + "PRIVATE KEY-----": "private key",
        "AKIA" + "ABCDEFGHIJKLMNOP": "AWS access key",
        "Authorization: Token " + "0123456789abcdef" * 2 + "01234567": "API key in a header",
        "postgres://app:" + "hunter2@db:5432/x": "password in a URL",
        "SECRET_KEY = '" + "real-production-secret'": "SECRET_KEY value",
    }
    for sample, what in samples.items():
        assert [f.split(": ", 1)[1] for f in secret_findings("x", sample)] == [what], sample
    assert secret_findings("x", "postgres://user:pass@host:5432/name") == []


def test_no_tracked_file_holds_a_secret():
    findings = []
    names = tracked_files()
    assert len(names) > 100
    for name in names:
        if SECRET_FILES.search(name):
            findings.append(f"{name}: a secrets file is tracked")
            continue
        path = ROOT / name
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue  # binary
        findings.extend(secret_findings(name, data.decode("utf-8", "replace")))
    assert findings == []
