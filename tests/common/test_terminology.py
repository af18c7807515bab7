"""Canonical pages say Microgrid, Microgrid Node and Node Limit, never the legacy terms.

The page list is not hand-kept: every Manage route is found in the URL
configuration, so a page added later is scanned without touching this file.
Only the legacy pages (under /manage/legacy/) may say "circuit".
"""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

LEGACY_TERMS = re.compile(r"circuit", re.IGNORECASE)
LEGACY_PREFIX = "/manage/legacy/"
PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")


def _routes(patterns, prefix: str = ""):
    for entry in patterns:
        route = getattr(entry.pattern, "_route", None)
        if route is None:  # a regex pattern: not a page route
            continue
        if isinstance(entry, URLResolver):
            yield from _routes(entry.url_patterns, prefix + route)
        elif isinstance(entry, URLPattern):
            yield prefix + route


def _fill(route: str) -> str:
    """A concrete URL for a route: the fixture's microgrid, 1 for other ids (a 404 page
    is a canonical page too)."""

    def value(match: re.Match) -> str:
        name = match["name"]
        if name == "microgrid_id":
            return "MG.NORTH-1"
        if match["converter"] in ("int", None) or name.endswith("version"):
            return "1"
        return "x-1"

    return "/" + PARAM.sub(value, route)


def canonical_page_urls() -> list[str]:
    urls = {
        _fill(route)
        for route in _routes(get_resolver().url_patterns)
        if route.startswith("manage/")
    }
    return sorted(u for u in urls if not u.startswith(LEGACY_PREFIX))


def test_the_scan_finds_the_manage_pages():
    urls = canonical_page_urls()
    assert "/manage/microgrids/" in urls
    assert "/manage/microgrids/MG.NORTH-1/topology/" in urls
    assert "/manage/microgrids/MG.NORTH-1/topology/edit/" in urls


@pytest.mark.django_db
def test_no_canonical_page_uses_legacy_terms(operator_client, microgrid):
    for url in ["/accounts/login/", *canonical_page_urls()]:
        response = operator_client.get(url, follow=True)
        # 405: a POST-only action (delete, rebalance) has no page of its own.
        assert response.status_code in (200, 404, 405), (url, response.status_code)
        html = response.content.decode()
        found = LEGACY_TERMS.search(html)
        assert not found, f"{url} says {html[max(found.start() - 60, 0) : found.end() + 60]!r}"


@pytest.mark.django_db
def test_editor_error_and_conflict_states_use_canonical_terms(operator_client, microgrid):
    from microgrid.topology.selectors import topology_document
    from microgrid.topology.services import topology_replace

    page = operator_client.get("/manage/microgrids/MG.NORTH-1/topology/edit/").content.decode()
    assert "Microgrid Node" in page
    rejected = operator_client.post(
        "/manage/microgrids/MG.NORTH-1/topology/edit/",
        {"base_version": "1", "nodes-TOTAL_FORMS": "1", "nodes-INITIAL_FORMS": "0",
         "nodes-0-node_id": "x", "nodes-0-parent_id": "x", "nodes-0-kind": "FEEDER",
         "assets-TOTAL_FORMS": "0", "assets-INITIAL_FORMS": "0"},
    )  # fmt: skip
    assert rejected.status_code == 422
    assert not LEGACY_TERMS.search(rejected.content.decode())
    # The conflict: someone else saves version 2 first.
    document = topology_document(microgrid)
    topology_replace(
        microgrid=microgrid, base_version=1, nodes=document["nodes"], assets=document["assets"]
    )
    conflict = operator_client.post(
        "/manage/microgrids/MG.NORTH-1/topology/edit/",
        {"base_version": "1", "nodes-TOTAL_FORMS": "0", "nodes-INITIAL_FORMS": "0",
         "assets-TOTAL_FORMS": "0", "assets-INITIAL_FORMS": "0"},
    )  # fmt: skip
    assert conflict.status_code == 409
    assert not LEGACY_TERMS.search(conflict.content.decode())
