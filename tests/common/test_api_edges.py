"""Edges of the API a new user hits: form bodies, role refusals, the docs page, the icon."""

import pytest

from microgrid.topology.models import Microgrid

LIMITS = "/api/microgrids/MG.NORTH-1/limits/"


@pytest.mark.django_db
def test_a_form_encoded_body_is_415_unsupported_media_type_and_changes_nothing(
    operator_api, microgrid
):
    response = operator_api.post(
        LIMITS, "scope=MICROGRID&limit_kw=10", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 415
    body = response.json()
    assert body["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert body["details"]["supported"] == ["application/json"]
    assert "application/x-www-form-urlencoded" in body["message"]
    assert operator_api.get(LIMITS).json()["limits"] == []


@pytest.mark.django_db
def test_broken_json_stays_400_malformed_request(operator_api, microgrid):
    response = operator_api.post(LIMITS, "{nope", content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (400, "MALFORMED_REQUEST")


@pytest.mark.django_db
def test_permission_denied_names_the_roles_that_would_be_allowed(
    operator_api, integration_api, microgrid
):
    response = operator_api.post(
        "/api/microgrids/",
        {
            "microgrid_id": "MG.X-1",
            "name": "X",
            "depot": {"depot_id": "D-X", "name": "X", "timezone": "UTC"},
        },
        format="json",
    )
    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "PERMISSION_DENIED"
    assert body["details"] == {"allowed_roles": ["support"], "your_roles": ["operator"]}
    assert "support" in body["message"]
    assert not Microgrid.objects.filter(microgrid_id="MG.X-1").exists()
    refused = integration_api.get("/api/microgrids/").json()
    assert refused["details"] == {
        "allowed_roles": ["operator", "support"],
        "your_roles": ["integration"],
    }


@pytest.mark.django_db
def test_the_docs_page_sends_a_browser_without_a_session_to_the_login_page(client):
    response = client.get("/api/docs/", HTTP_ACCEPT="text/html,application/xhtml+xml")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/api/docs/"
    # An API client still gets the JSON refusal.
    refused = client.get("/api/docs/", HTTP_ACCEPT="*/*")
    assert (refused.status_code, refused.json()["code"]) == (401, "NOT_AUTHENTICATED")


@pytest.mark.django_db
def test_the_docs_page_has_a_way_back_to_the_app(operator_client):
    html = operator_client.get("/api/docs/", HTTP_ACCEPT="text/html").content.decode()
    assert 'data-testid="docs-back"' in html and 'href="/manage/microgrids/"' in html


def test_favicon_is_served(client):
    response = client.get("/favicon.ico", follow=True)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("image/svg")
