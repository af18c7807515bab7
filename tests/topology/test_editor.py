"""The Manage topology editor through Django's client, and its form-to-topology mapping."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from microgrid.topology import forms as editor_forms
from microgrid.topology.models import Asset, Microgrid, MicrogridNode, TopologyRevision
from microgrid.topology.services import topology_replace

EDIT = "/manage/microgrids/MG.NORTH-1/topology/edit/"
VIEW = "/manage/microgrids/MG.NORTH-1/topology/"


class _FormFields(HTMLParser):
    """What a browser would post from the editor form as rendered (no JavaScript)."""

    def __init__(self):
        super().__init__()
        self.fields: dict[str, str] = {}
        self._select: str | None = None
        self._first_option: str | None = None
        self._in_form = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and a.get("data-testid") == "topology-editor":
            self._in_form = True
        if not self._in_form:
            return
        if tag == "input" and a.get("name") and a.get("type") != "submit":
            if a.get("type") == "checkbox":
                if "checked" in a:
                    self.fields[a["name"]] = "on"
            else:
                self.fields[a["name"]] = a.get("value") or ""
        elif tag == "select":
            self._select, self._first_option = a["name"], None
        elif tag == "option" and self._select:
            if self._first_option is None:
                self._first_option = a.get("value", "")
                self.fields.setdefault(self._select, self._first_option)
            if "selected" in a:
                self.fields[self._select] = a.get("value", "")

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "form":
            self._in_form = False


def editor_form(client, url: str = EDIT) -> dict[str, str]:
    response = client.get(url)
    assert response.status_code == 200
    parser = _FormFields()
    parser.feed(response.content.decode())
    return parser.fields


def row_prefix(fields: dict[str, str], kind: str, ident: str) -> str:
    id_field = "node_id" if kind == "nodes" else "asset_id"
    for key, value in fields.items():
        if key.startswith(f"{kind}-") and key.endswith(f"-{id_field}") and value == ident:
            return key[: -len(id_field)]
    raise AssertionError(f"no {kind} row for {ident}")


def blank_prefix(fields: dict[str, str], kind: str) -> str:
    id_field = "node_id" if kind == "nodes" else "asset_id"
    for key, value in fields.items():
        if key.startswith(f"{kind}-") and key.endswith(f"-{id_field}") and not value:
            return key[: -len(id_field)]
    raise AssertionError(f"no blank {kind} row")


def state(microgrid_id: str = "MG.NORTH-1") -> tuple:
    """Everything a failed save must leave alone."""
    mg = Microgrid.objects.get(microgrid_id=microgrid_id)
    nodes = sorted(
        MicrogridNode.objects.filter(microgrid=mg).values_list(
            "node_id", "parent__node_id", "kind", "name", "physical_rating_kw"
        )
    )
    assets = sorted(
        Asset.objects.filter(microgrid=mg).values_list("asset_id", "node__node_id", "name")
    )
    return (
        mg.topology_version,
        TopologyRevision.objects.filter(microgrid=mg).count(),
        nodes,
        assets,
    )


# ---------------------------------------------------------------- the form-to-topology mapping


def _bound(nodes: list[dict], assets: list[dict]):
    data = {
        "nodes-TOTAL_FORMS": str(len(nodes)),
        "nodes-INITIAL_FORMS": "0",
        "assets-TOTAL_FORMS": str(len(assets)),
        "assets-INITIAL_FORMS": "0",
    }
    for prefix, rows in (("nodes", nodes), ("assets", assets)):
        for i, row in enumerate(rows):
            for key, value in row.items():
                data[f"{prefix}-{i}-{key}"] = value
    node_fs, asset_fs = editor_forms.editor_formsets(data=data)
    assert node_fs.is_valid() and asset_fs.is_valid()
    return editor_forms.staged_topology(node_fs, asset_fs)


def test_rows_become_the_api_shape_with_numbers_parsed_and_the_root_without_parent():
    staged = _bound(
        [
            {"node_id": "grid", "parent_id": "", "kind": "GRID_CONNECTION", "name": "Grid",
             "physical_rating_kw": "800", "voltage_v": "", "phases": "3"},
            {"node_id": "sb", "parent_id": "grid", "kind": "SWITCHBOARD", "name": "Board",
             "physical_rating_kw": "412.5", "voltage_v": "240", "phases": "1"},
        ],
        [
            {"asset_id": "CH", "node_id": "sb", "kind": "CHARGER", "name": "Charger",
             "max_power_kw": "22", "min_power_kw": "4.1", "priority": "2",
             "failsafe_power_kw": "", "rated_power_kw": "99", "fallback_kw": "5"},
        ],
    )  # fmt: skip
    assert staged.nodes == [
        {"node_id": "grid", "parent_id": None, "kind": "GRID_CONNECTION", "name": "Grid",
         "physical_rating_kw": 800, "phases": 3},
        {"node_id": "sb", "parent_id": "grid", "kind": "SWITCHBOARD", "name": "Board",
         "physical_rating_kw": 412.5, "voltage_v": 240, "phases": 1},
    ]  # fmt: skip
    # Only the charger's own fields: the hidden rated/fallback inputs are ignored.
    assert staged.assets == [
        {"asset_id": "CH", "node_id": "sb", "kind": "CHARGER", "name": "Charger",
         "max_power_kw": 22, "min_power_kw": 4.1, "priority": 2},
    ]  # fmt: skip


def test_blank_rows_and_rows_marked_for_removal_are_not_staged():
    staged = _bound(
        [
            {"node_id": "grid", "kind": "GRID_CONNECTION", "name": "G", "physical_rating_kw": "1"},
            {"node_id": "old", "parent_id": "grid", "kind": "FEEDER", "name": "Old",
             "physical_rating_kw": "1", "remove": "on"},
            {"node_id": "", "parent_id": "", "kind": "", "name": "", "phases": "3"},
        ],
        [{"asset_id": "", "node_id": "", "kind": "", "priority": ""}],
    )  # fmt: skip
    assert [n["node_id"] for n in staged.nodes] == ["grid"]
    assert staged.assets == []


def test_empty_and_unparseable_fields_are_left_for_the_validator_to_name():
    staged = _bound(
        [
            {
                "node_id": "x",
                "parent_id": "grid",
                "kind": "",
                "name": "",
                "physical_rating_kw": "lots",
            }
        ],
        [],
    )
    assert staged.nodes == [{"node_id": "x", "parent_id": "grid", "physical_rating_kw": "lots"}]


def test_changes_are_reported_against_the_loaded_row_with_defaults_applied():
    saved = {"node_id": "sb", "parent_id": "grid", "kind": "SWITCHBOARD", "name": "Board",
             "physical_rating_kw": 400.0, "voltage_v": 230.0, "phases": 3}  # fmt: skip
    same = {"node_id": "sb", "parent_id": "grid", "kind": "SWITCHBOARD", "name": "Board",
            "physical_rating_kw": "400", "voltage_v": "", "phases": "3"}  # fmt: skip
    assert editor_forms.node_row_changes(same, saved) == []
    moved = {**same, "parent_id": "grp-a", "name": "Board one"}
    assert editor_forms.node_row_changes(moved, saved) == ["parent_id", "name"]


# ---------------------------------------------------------------- access and the loaded form


@pytest.mark.django_db
def test_editor_requires_login_and_a_writing_role(client, make_user, microgrid):
    assert client.get(EDIT).status_code == 302
    client.force_login(make_user("integration"))
    assert client.get(EDIT).status_code == 403
    assert client.post(EDIT, {}).status_code == 403
    assert state()[0] == 1


@pytest.mark.django_db
def test_unknown_microgrid_editor_is_a_not_found_page(operator_client):
    response = operator_client.get("/manage/microgrids/NOPE/topology/edit/")
    assert response.status_code == 404
    assert "MICROGRID_NOT_FOUND" in response.content.decode()


@pytest.mark.django_db
def test_topology_view_offers_the_editor_to_operators(operator_client, microgrid):
    html = operator_client.get(VIEW).content.decode()
    assert 'href="edit/"' in html and "Edit topology" in html


@pytest.mark.django_db
def test_editor_loads_every_node_and_asset_with_the_version_and_blank_rows(
    operator_client, microgrid
):
    fields = editor_form(operator_client)
    assert fields["base_version"] == "1"
    assert fields[row_prefix(fields, "nodes", "sb-1") + "parent_id"] == "grid"
    assert fields[row_prefix(fields, "nodes", "grid") + "parent_id"] == ""
    assert fields[row_prefix(fields, "assets", "CH-03") + "node_id"] == "grp-b"
    assert fields[row_prefix(fields, "assets", "SITE") + "fallback_kw"] == "80"
    assert fields["nodes-TOTAL_FORMS"] == str(4 + editor_forms.BLANK_ROWS)
    assert fields["assets-TOTAL_FORMS"] == str(6 + editor_forms.BLANK_ROWS)


@pytest.mark.django_db
def test_posting_the_form_unchanged_saves_a_new_version_with_no_change(operator_client, microgrid):
    before = state()
    response = operator_client.post(EDIT, editor_form(operator_client))
    assert response.status_code == 302
    after = state()
    assert after[0] == 2 and after[2:] == before[2:]
    assert TopologyRevision.objects.get(version=2).summary == "no change"


# ---------------------------------------------------------------- valid edits


@pytest.mark.django_db
def test_a_valid_edit_adds_renames_moves_and_removes_in_one_save(operator_client, microgrid):
    fields = editor_form(operator_client)
    new = blank_prefix(fields, "nodes")
    fields.update(
        {
            new + "node_id": "grp-c",
            new + "parent_id": "sb-1",
            new + "kind": "CHARGER_GROUP",
            new + "name": "Bay C",
            new + "physical_rating_kw": "200",
        }
    )
    fields[row_prefix(fields, "nodes", "grp-a") + "name"] = "Bay A north"
    fields[row_prefix(fields, "nodes", "grp-b") + "parent_id"] = "grid"  # a move
    fields[row_prefix(fields, "assets", "CH-03") + "node_id"] = "grp-c"
    fields[row_prefix(fields, "assets", "PV-1") + "remove"] = "on"  # a detach
    asset = blank_prefix(fields, "assets")
    fields.update(
        {
            asset + "asset_id": "BAT-1",
            asset + "node_id": "grid",
            asset + "kind": "BATTERY",
            asset + "name": "Battery",
            asset + "rated_power_kw": "100",
            asset + "fallback_kw": "-50",
        }
    )

    response = operator_client.post(EDIT, fields, follow=True)

    assert response.redirect_chain == [(VIEW, 302)]
    html = response.content.decode()
    assert "Topology saved as version 2" in html
    assert 'data-testid="topology-version">2<' in html
    version, _, nodes, assets = state()
    assert version == 2
    assert ("grp-c", "sb-1", "CHARGER_GROUP", "Bay C", 200.0) in nodes
    assert ("grp-a", "sb-1", "CHARGER_GROUP", "Bay A north", 250.0) in nodes
    assert ("grp-b", "grid", "CHARGER_GROUP", "Bay B", 250.0) in nodes
    assert ("CH-03", "grp-c", "Charger 3") in assets
    assert ("BAT-1", "grid", "Battery") in assets
    assert "PV-1" not in [a[0] for a in assets]
    revision = TopologyRevision.objects.get(version=2)
    assert revision.created_by.username == "operator-user"


@pytest.mark.django_db
def test_the_first_topology_of_an_empty_microgrid_is_built_in_the_editor(
    operator_client, empty_microgrid
):
    fields = editor_form(operator_client)
    assert fields["base_version"] == "0"
    root = blank_prefix(fields, "nodes")
    fields.update(
        {
            root + "node_id": "grid",
            root + "kind": "GRID_CONNECTION",
            root + "name": "Grid",
            root + "physical_rating_kw": "500",
        }
    )
    assert operator_client.post(EDIT, fields).status_code == 302
    assert state()[0] == 1 and [n[0] for n in state()[2]] == ["grid"]


# ---------------------------------------------------------------- rejected edits


@pytest.mark.django_db
def test_a_cycle_is_rejected_beside_both_rows_and_nothing_changes(operator_client, microgrid):
    before = state()
    fields = editor_form(operator_client)
    fields[row_prefix(fields, "nodes", "sb-1") + "parent_id"] = "grp-a"

    response = operator_client.post(EDIT, fields)

    assert response.status_code == 422
    assert state() == before
    html = response.content.decode()
    summary = html.split('data-testid="error-summary"')[1].split("</ul>")[0]
    assert summary.count('data-code="TOPOLOGY_CYCLE"') == 1
    assert "grp-a, sb-1" in summary
    for node_id in ("sb-1", "grp-a"):
        beside = html.split(f'data-errors-for="{node_id}"')[1].split("</tr>")[0]
        assert "TOPOLOGY_CYCLE" in beside
    # The staged edit is re-rendered so it can be fixed, marked as a move.
    fields_after = _parse(html)
    assert fields_after[row_prefix(fields_after, "nodes", "sb-1") + "parent_id"] == "grp-a"
    assert fields_after["base_version"] == "1"
    assert "moved from grid" in html
    assert 'aria-invalid="true"' in html.split('id="node-row-sb-1"')[1].split("</tr>")[0]
    # The saved topology shown on the page is still version 1.
    assert "still version 1" in html


@pytest.mark.django_db
def test_removing_a_parent_orphans_its_children_and_is_rejected(operator_client, microgrid):
    before = state()
    fields = editor_form(operator_client)
    fields[row_prefix(fields, "nodes", "sb-1") + "remove"] = "on"

    response = operator_client.post(EDIT, fields)

    assert response.status_code == 422
    assert state() == before
    html = response.content.decode()
    for node_id in ("grp-a", "grp-b"):
        beside = html.split(f'data-errors-for="{node_id}"')[1].split("</tr>")[0]
        assert "TOPOLOGY_ORPHAN_NODE" in beside
    fields_after = _parse(html)
    assert fields_after[row_prefix(fields_after, "nodes", "sb-1") + "remove"] == "on"
    assert "to remove" in html


@pytest.mark.django_db
def test_every_error_is_listed_with_its_code_and_shown_beside_its_row(operator_client, microgrid):
    before = state()
    fields = editor_form(operator_client)
    fields[row_prefix(fields, "nodes", "grp-b") + "physical_rating_kw"] = "-5"
    fields[row_prefix(fields, "assets", "CH-01") + "min_power_kw"] = "999"
    new = blank_prefix(fields, "nodes")
    fields.update({new + "name": "Nameless", new + "kind": "FEEDER", new + "parent_id": "grid"})
    fields[row_prefix(fields, "assets", "CH-02") + "node_id"] = "nowhere"

    response = operator_client.post(EDIT, fields)

    assert response.status_code == 422
    assert state() == before
    html = response.content.decode()
    summary = html.split('data-testid="error-summary"')[1].split("</ul>")[0]
    codes = [part.split('"')[0] for part in summary.split('data-code="')[1:]]
    assert codes == sorted(codes)
    assert codes.count("FIELD_INVALID") >= 3 and "ASSET_NODE_NOT_FOUND" in codes
    for row_id, code in (("grp-b", "FIELD_INVALID"), ("CH-01", "FIELD_INVALID"),
                         ("CH-02", "ASSET_NODE_NOT_FOUND")):  # fmt: skip
        assert code in html.split(f'data-errors-for="{row_id}"')[1].split("</tr>")[0]
    # The unnamed new row gets its "node_id is required" beside it.
    assert "node_id is required" in html.split('data-errors-for=""')[1].split("</tr>")[0]
    grp_b = html.split('id="node-row-grp-b"')[1].split("</tr>")[0]
    rating = grp_b.split('name="nodes-')[0:]
    assert any("physical_rating_kw" in r and 'aria-invalid="true"' in r for r in rating)


@pytest.mark.django_db
def test_removing_a_referenced_node_is_refused_beside_its_row(operator_client, microgrid, request):
    from microgrid.topology.signals import node_references

    def provider(sender, *, microgrid, **kwargs):
        return [("node", "grp-b", {"type": "LIMIT_POLICY", "id": "7"})]

    node_references.connect(provider, dispatch_uid="test.provider")
    request.addfinalizer(lambda: node_references.disconnect(dispatch_uid="test.provider"))
    before = state()
    fields = editor_form(operator_client)
    fields[row_prefix(fields, "nodes", "grp-b") + "remove"] = "on"
    fields[row_prefix(fields, "assets", "CH-03") + "node_id"] = "grp-a"

    response = operator_client.post(EDIT, fields)

    assert response.status_code == 422
    assert state() == before
    beside = response.content.decode().split('data-errors-for="grp-b"')[1].split("</tr>")[0]
    assert "NODE_IN_USE" in beside and "LIMIT_POLICY" in beside


@pytest.mark.django_db
def test_a_tampered_form_is_refused_without_a_server_error(operator_client, microgrid):
    before = state()
    fields = editor_form(operator_client)
    del fields["nodes-TOTAL_FORMS"]
    response = operator_client.post(EDIT, fields)
    assert response.status_code == 400
    assert "MALFORMED_REQUEST" in response.content.decode()

    for bad in ("one", "²", "99999999999999999999"):
        fields = editor_form(operator_client)
        fields["base_version"] = bad
        response = operator_client.post(EDIT, fields)
        assert response.status_code == 422, bad
        summary = response.content.decode().split('data-testid="error-summary"')[1]
        assert 'data-code="FIELD_INVALID"' in summary and "· base_version" in summary

    fields = editor_form(operator_client)
    fields["nodes-TOTAL_FORMS"] = str(editor_forms.MAX_ROWS + 1)
    assert operator_client.post(EDIT, fields).status_code == 400
    assert state() == before


@pytest.mark.django_db
def test_add_rows_keeps_staged_edits_offers_new_nodes_and_saves_nothing(operator_client, microgrid):
    before = state()
    fields = editor_form(operator_client)
    new = blank_prefix(fields, "nodes")
    fields.update({new + "node_id": "grp-c", new + "name": "Bay C"})
    fields["add_rows"] = "1"

    response = operator_client.post(EDIT, fields)

    assert response.status_code == 200
    assert state() == before
    after = _parse(response.content.decode())
    assert after["nodes-TOTAL_FORMS"] == str(4 + 2 * editor_forms.BLANK_ROWS)
    assert after[row_prefix(after, "nodes", "grp-c") + "name"] == "Bay C"
    assert '<option value="grp-c">grp-c — Bay C</option>' in response.content.decode()


# ---------------------------------------------------------------- conflicts


@pytest.mark.django_db
def test_a_stale_save_shows_the_conflict_and_changes_nothing(
    operator_client, make_user, microgrid, small_topology
):
    fields = editor_form(operator_client)  # loaded at version 1
    other = make_user("operator", "operator-2")
    small_topology["nodes"][3]["name"] = "Bay B east"
    topology_replace(microgrid=microgrid, base_version=1, user=other, **small_topology)  # version 2
    before = state()
    fields[row_prefix(fields, "assets", "CH-03") + "node_id"] = "grp-a"

    response = operator_client.post(EDIT, fields)

    assert response.status_code == 409
    assert state() == before
    html = response.content.decode()
    panel = html.split('data-testid="editor-conflict"')[1].split("</section>")[0]
    assert "TOPOLOGY_VERSION_CONFLICT" in panel
    assert 'data-testid="conflict-base-version">1<' in panel
    assert 'data-testid="conflict-current-version">2<' in panel
    assert 'data-testid="conflict-updated-by">operator-2<' in panel
    assert "changed node grp-b" in panel  # what changed in between, in words
    assert f'href="{EDIT}" data-testid="load-latest"' in panel
    # The staged edit is kept for reference; saving the stale form is not offered.
    after = _parse(html)
    assert after[row_prefix(after, "assets", "CH-03") + "node_id"] == "grp-a"
    assert 'data-testid="save-topology" disabled' in html


@pytest.mark.django_db
def test_after_loading_the_latest_version_the_same_edit_succeeds(
    operator_client, make_user, microgrid, small_topology
):
    stale = editor_form(operator_client)
    small_topology["nodes"][3]["name"] = "Bay B east"
    topology_replace(microgrid=microgrid, base_version=1, user=make_user("operator", "o2"),
                     **small_topology)  # fmt: skip
    stale[row_prefix(stale, "assets", "CH-03") + "node_id"] = "grp-a"
    assert operator_client.post(EDIT, stale).status_code == 409

    latest = editor_form(operator_client)
    assert latest["base_version"] == "2"
    latest[row_prefix(latest, "assets", "CH-03") + "node_id"] = "grp-a"
    assert operator_client.post(EDIT, latest).status_code == 302

    version, _, nodes, assets = state()
    assert version == 3
    assert ("CH-03", "grp-a", "Charger 3") in assets
    assert ("grp-b", "sb-1", "CHARGER_GROUP", "Bay B east", 250.0) in nodes


# ---------------------------------------------------------------- cost


def _queries(client, method: str, *args) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        getattr(client, method)(*args)
    return len(captured)


def _cycle_post(client) -> dict[str, str]:
    fields = editor_form(client)
    fields[row_prefix(fields, "nodes", "sb-1") + "parent_id"] = "grp-a"
    return fields


@pytest.mark.django_db
def test_editor_query_count_does_not_grow_with_the_tree(operator_client, microgrid):
    from microgrid.topology.selectors import topology_document

    small = (_queries(operator_client, "get", EDIT),
             _queries(operator_client, "post", EDIT, _cycle_post(operator_client)))  # fmt: skip
    document = topology_document(microgrid)
    topology_replace(
        microgrid=microgrid,
        base_version=1,
        nodes=document["nodes"]
        + [{"node_id": f"g{i}", "parent_id": "sb-1", "kind": "CHARGER_GROUP", "name": f"G{i}",
            "physical_rating_kw": 50} for i in range(40)],
        assets=document["assets"]
        + [{"asset_id": f"C{i}", "node_id": f"g{i % 40}", "kind": "CHARGER", "name": f"C{i}",
            "max_power_kw": 22} for i in range(120)],
    )  # fmt: skip
    large = (_queries(operator_client, "get", EDIT),
             _queries(operator_client, "post", EDIT, _cycle_post(operator_client)))  # fmt: skip
    assert large == small
    assert small[0] <= 10 and small[1] <= 20


def _parse(html: str) -> dict[str, str]:
    parser = _FormFields()
    parser.feed(html)
    return parser.fields
