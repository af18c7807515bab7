"""The topology diagram and load chart are pure SVG renderers: no Django needed."""

from __future__ import annotations

import random
import re
import xml.etree.ElementTree as ET
from itertools import pairwise

import pytest

from microgrid.topology.diagram import (
    BOX_H,
    layout_tree,
    render_load_chart_svg,
    render_topology_svg,
)

SVG = "{http://www.w3.org/2000/svg}"


def node(node_id, parent_id, kind="FEEDER", name=None, rating=100):
    return {
        "node_id": node_id,
        "parent_id": parent_id,
        "kind": kind,
        "name": name or f"Node {node_id}",
        "physical_rating_kw": rating,
    }


def charger(asset_id, node_id, kw=50):
    return {
        "asset_id": asset_id,
        "node_id": node_id,
        "kind": "CHARGER",
        "name": asset_id,
        "max_power_kw": kw,
    }


def depot(switchboards=3, feeders=4, groups=4, chargers=2):
    """A realistic depot: grid connection, switchboards, feeders, charger groups."""
    nodes = [node("grid", None, "GRID_CONNECTION", "Grid", 1000)]
    assets = [{"asset_id": "meter-1", "node_id": "grid", "kind": "METER", "name": "Main"}]
    for s in range(switchboards):
        sb = f"sb-{s}"
        nodes.append(node(sb, "grid", "SWITCHBOARD"))
        for f in range(feeders):
            fd = f"{sb}.f{f}"
            nodes.append(node(fd, sb, "FEEDER"))
            # Uneven families, so both row and column placement are exercised.
            for g in range(groups if f % 2 else 1 + f % 3):
                cg = f"{fd}.cg{g}"
                nodes.append(node(cg, fd, "CHARGER_GROUP"))
                assets.extend(charger(f"{cg}.c{c}", cg) for c in range(chargers + g))
    return nodes, assets


def random_tree(seed, size):
    rng = random.Random(seed)
    nodes = [node("n000", None, "GRID_CONNECTION")]
    for i in range(1, size):
        nodes.append(node(f"n{i:03d}", rng.choice(nodes)["node_id"]))
    assets = [
        charger(f"a{i}", rng.choice(nodes)["node_id"]) for i in range(rng.randrange(size * 2))
    ]
    return nodes, assets


def parse(svg):
    return ET.fromstring(svg)


def node_groups(svg):
    return [g for g in parse(svg).iter(f"{SVG}g") if g.get("class") == "mg-node"]


def overlaps(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


# --------------------------------------------------------------------------- topology


def test_every_node_appears_once_with_its_escaped_name_and_id():
    nodes = [
        node("grid", None, "GRID_CONNECTION", 'Grid <main> & "co"'),
        node("sb.1", "grid", "SWITCHBOARD", "<script>alert(1)</script>"),
        node("f-1", "sb.1", "FEEDER", "Feeder 1"),
    ]
    svg = render_topology_svg(nodes, [])

    drawn = [g.get("data-node-id") for g in node_groups(svg)]
    assert sorted(drawn) == ["f-1", "grid", "sb.1"]
    assert "Grid &lt;main&gt; &amp; &quot;co&quot;" in svg
    assert "&lt;script&gt;" in svg
    assert "<script>" not in svg
    for node_id in ("grid", "sb.1", "f-1"):
        assert f">{node_id}</text>" in svg


def test_each_node_box_links_to_its_page_when_node_href_is_given():
    nodes, assets = depot(switchboards=1, feeders=2)
    svg = render_topology_svg(nodes, assets, node_href=lambda nid: f"/manage/nodes/{nid}/?a=1&b=2")

    links = [a.get("href") for a in parse(svg).iter(f"{SVG}a")]
    assert sorted(links) == sorted(f"/manage/nodes/{n['node_id']}/?a=1&b=2" for n in nodes)
    assert "?a=1&amp;b=2" in svg


def test_a_node_without_a_link_target_is_drawn_without_a_link():
    nodes = [node("grid", None, "GRID_CONNECTION"), node("f1", "grid")]
    svg = render_topology_svg(nodes, [], node_href=lambda nid: None if nid == "f1" else "/g/")

    assert [a.get("href") for a in parse(svg).iter(f"{SVG}a")] == ["/g/"]
    assert "<a " not in render_topology_svg(nodes, [])


def test_children_are_drawn_below_their_parents():
    nodes, assets = depot()
    rects = layout_tree(nodes, assets)

    for n in nodes:
        if n["parent_id"]:
            _, parent_y, _, parent_h = rects[n["parent_id"]]
            assert rects[n["node_id"]][1] >= parent_y + parent_h


@pytest.mark.parametrize("seed", range(12))
def test_node_boxes_and_their_asset_chips_never_overlap(seed):
    nodes, assets = random_tree(seed, size=15 + seed * 5)
    rects = list(layout_tree(nodes, assets).values())

    assert len(rects) == len(nodes)
    for i, a in enumerate(rects):
        for b in rects[i + 1 :]:
            assert not overlaps(a, b)


def test_a_sixty_node_depot_has_no_overlaps_and_stays_a_few_screens_wide():
    nodes, assets = depot(switchboards=3, feeders=4, groups=5)
    rects = list(layout_tree(nodes, assets).values())

    assert 50 <= len(nodes) <= 70
    assert not any(overlaps(a, b) for i, a in enumerate(rects) for b in rects[i + 1 :])
    assert max(x + w for x, _, w, _ in rects) < 4000


def test_children_are_ordered_by_node_id():
    nodes = [
        node("grid", None, "GRID_CONNECTION"),
        node("b", "grid", "SWITCHBOARD"),
        node("a", "grid", "SWITCHBOARD"),
        node("b.2", "b"),
        node("b.1", "b"),
        node("a.1", "a"),
        node("a.1.x", "a.1"),
    ]
    rects = layout_tree(nodes)

    # Families with children spread left to right; leaf families stack top to bottom.
    assert rects["a"][0] < rects["b"][0]
    assert rects["b.1"][1] < rects["b.2"][1]


def test_the_svg_size_fits_every_box():
    nodes, assets = depot()
    svg = render_topology_svg(nodes, assets)
    root = parse(svg)
    width, height = int(root.get("width")), int(root.get("height"))

    assert root.get("viewBox") == f"0 0 {width} {height}"
    for x, y, w, h in layout_tree(nodes, assets).values():
        assert x >= 0 and y >= 0 and x + w <= width and y + h <= height


def test_a_parent_cycle_neither_hangs_nor_crashes_and_draws_each_node_once():
    nodes = [
        node("grid", None, "GRID_CONNECTION"),
        node("a", "c"),
        node("b", "a"),
        node("c", "b"),
        node("below", "b"),
        node("self", "self"),
    ]
    svg = render_topology_svg(nodes, [charger("x", "below")])

    drawn = sorted(g.get("data-node-id") for g in node_groups(svg))
    assert drawn == ["a", "b", "below", "c", "grid", "self"]
    assert "in a parent cycle (a, b, c)" in svg
    assert "is its own parent" in svg


def test_a_node_whose_parent_is_missing_is_drawn_as_an_extra_root():
    nodes = [node("grid", None, "GRID_CONNECTION"), node("lost", "gone"), node("kid", "lost")]
    rects = layout_tree(nodes)
    svg = render_topology_svg(nodes, [])

    assert rects["lost"][1] == rects["grid"][1]
    assert rects["kid"][1] > rects["lost"][1]
    assert "parent gone not found" in svg
    assert "2 separate trees" in svg


def test_odd_input_is_drawn_rather_than_raised():
    nodes = [
        None,
        "not a dict",
        {"parent_id": "x"},
        {"node_id": "grid", "parent_id": None, "kind": "GRID_CONNECTION", "name": None},
        {"node_id": "grid", "parent_id": None, "kind": "FEEDER", "name": "Duplicate"},
        {"node_id": 7, "parent_id": "grid", "kind": "WEIRD", "physical_rating_kw": "abc"},
        node("nan", "grid", rating=float("nan")),
        node("bool", "grid", rating=True),
    ]
    assets = [
        None,
        {"asset_id": "p", "node_id": "grid", "kind": "PV", "rated_power_kw": "lots"},
        {"asset_id": "q", "node_id": "nowhere", "kind": "CHARGER"},
        {"node_id": "7", "kind": None},
    ]
    svg = render_topology_svg(nodes, assets, highlight_node_ids=None)

    assert sorted(g.get("data-node-id") for g in node_groups(svg)) == ["7", "bool", "grid", "nan"]
    assert "Duplicate" not in svg
    assert "no rating" in svg
    assert "1 asset attached to no drawn node" in svg


def test_a_very_deep_chain_does_not_hit_the_recursion_limit():
    nodes = [node("n0", None, "GRID_CONNECTION")]
    nodes += [node(f"n{i}", f"n{i - 1}") for i in range(1, 3000)]

    assert len(layout_tree(nodes)) == 3000


def test_no_nodes_draws_an_empty_state():
    svg = render_topology_svg([], [])

    assert "No Microgrid Nodes yet" in svg
    parse(svg)


def test_output_is_deterministic_whatever_the_input_order():
    nodes, assets = depot()
    first = render_topology_svg(nodes, assets, highlight_node_ids={"sb-1"})
    nodes_2, assets_2 = nodes[:], assets[:]
    random.Random(4).shuffle(nodes_2)
    random.Random(5).shuffle(assets_2)

    assert render_topology_svg(nodes, assets, highlight_node_ids={"sb-1"}) == first
    assert render_topology_svg(nodes_2, assets_2, highlight_node_ids=["sb-1"]) == first


def test_highlighted_nodes_get_a_distinct_outline():
    nodes = [node("grid", None, "GRID_CONNECTION"), node("f1", "grid"), node("f2", "grid")]
    svg = render_topology_svg(nodes, [], highlight_node_ids={"f2"})

    marked = [g.get("data-node-id") for g in node_groups(svg) if g.get("data-highlight")]
    assert marked == ["f2"]
    assert svg.count('class="mg-highlight"') == 1


def test_assets_are_summarised_as_chips_per_kind_under_their_node():
    nodes = [node("grid", None, "GRID_CONNECTION"), node("cg", "grid", "CHARGER_GROUP")]
    assets = [charger(f"c{i}", "cg", 50) for i in range(12)] + [
        {"asset_id": "pv", "node_id": "grid", "kind": "PV", "name": "Roof", "rated_power_kw": 60},
        {"asset_id": "sl", "node_id": "grid", "kind": "SITE_LOAD", "name": "Offices"},
        {"asset_id": "m", "node_id": "grid", "kind": "METER", "name": "Main"},
    ]
    svg = render_topology_svg(nodes, assets)

    assert ">12 chargers \u00b7 600 kW</text>" in svg
    assert ">PV 60 kW</text>" in svg
    assert ">Site load</text>" in svg
    assert ">Meter</text>" in svg
    assert svg.count('class="mg-chip"') == 4


def test_each_node_shows_its_kind_and_physical_rating():
    svg = render_topology_svg([node("grid", None, "GRID_CONNECTION", rating=250)], [])

    assert ">Grid connection</text>" in svg
    assert ">250 kW</text>" in svg


def test_the_diagram_is_labelled_for_assistive_technology():
    nodes, assets = depot(switchboards=1, feeders=1)
    svg = render_topology_svg(nodes, assets)
    root = parse(svg)

    assert root.get("role") == "img"
    assert root.get("aria-label").startswith(f"Topology diagram: {len(nodes)} Microgrid Nodes")
    assert root.find(f"{SVG}title") is not None
    assert all(g.find(f".//{SVG}title") is not None for g in node_groups(svg))


def test_a_diagram_with_links_keeps_them_reachable_for_assistive_technology():
    # role="img" would make the node links presentational, hiding them.
    svg = render_topology_svg([node("grid", None, "GRID_CONNECTION")], [], node_href=lambda n: "/")

    assert parse(svg).get("role") == "group"


def test_a_hundreds_of_nodes_tree_renders_as_one_wide_scrollable_svg():
    nodes, assets = random_tree(seed=99, size=400)
    svg = render_topology_svg(nodes, assets)

    assert len(node_groups(svg)) == 400
    assert int(parse(svg).get("width")) > 1000


def test_boxes_in_the_svg_sit_where_the_layout_says():
    nodes, assets = depot(switchboards=1)
    rects = layout_tree(nodes, assets)
    svg = render_topology_svg(nodes, assets)

    for g in node_groups(svg):
        box = next(r for r in g.iter(f"{SVG}rect") if r.get("class") == "mg-box")
        x, y, w, _ = rects[g.get("data-node-id")]
        assert (int(box.get("x")), int(box.get("y")), int(box.get("width"))) == (x, y, w)
        assert int(box.get("height")) == BOX_H


# --------------------------------------------------------------------------- load chart


def series(label, style, values):
    return {"label": label, "style": style, "points": [(f"t{i}", v) for i, v in enumerate(values)]}


def line_paths(svg):
    return [p for p in parse(svg).iter(f"{SVG}path") if p.get("class") == "series-line"]


@pytest.mark.parametrize("data", [[], None, [series("Load", "area", [None, None])]])
def test_a_chart_without_values_says_no_data_yet(data):
    svg = render_load_chart_svg(data, title="Load")

    assert "No data yet" in svg
    assert line_paths(svg) == []


def test_a_chart_draws_one_line_per_series_and_a_legend():
    svg = render_load_chart_svg(
        [
            series("Load <kW>", "area", [10, 20, 35, 30]),
            series("Node Limit", "dashed", [40, 40, 30, 30]),
            series("Measured", "line", [12, 18, 33, 31]),
            series("Plan", "step", [5, 5, 8, 8]),
        ],
        title="sb-1",
    )
    root = parse(svg)

    assert len(line_paths(svg)) == 4
    legend = [t for t in root.iter(f"{SVG}text") if t.get("class") == "legend-item"]
    assert ["".join(t.itertext()) for t in legend] == [
        "Load <kW>Load <kW>",
        "Node LimitNode Limit",
        "MeasuredMeasured",
        "PlanPlan",
    ]
    assert "Load &lt;kW&gt;" in svg
    assert 'stroke-dasharray="6 4"' in svg
    assert sum(1 for p in root.iter(f"{SVG}path") if p.get("class") == "series-area") == 1


def test_a_gap_in_the_data_breaks_the_line():
    svg = render_load_chart_svg([series("Load", "line", [1, 2, None, 4, 5])])

    (path,) = line_paths(svg)
    assert path.get("d").count("M") == 2


def test_chart_ticks_are_round_kw_values_covering_the_data():
    svg = render_load_chart_svg([series("Load", "line", [0, 137, 412])])
    ticks = re.findall(r">([\d,.]+) kW</text>", svg)

    values = [float(t.replace(",", "")) for t in ticks]
    assert values[0] == 0 and values[-1] >= 412
    steps = {round(b - a, 6) for a, b in pairwise(values)}
    assert len(steps) == 1 and steps.pop() in {50, 100, 200, 250}


def test_many_x_labels_are_thinned_so_they_do_not_overlap():
    svg = render_load_chart_svg([series("Load", "line", list(range(200)))], width=720)
    shown = [
        t
        for t in parse(svg).iter(f"{SVG}text")
        if t.find(f"{SVG}title") is not None and t.get("class") != "legend-item"
    ]

    assert 2 <= len(shown) < 40


def test_the_chart_is_deterministic_and_well_formed():
    data = [series("Load", "area", [1.5, None, 3.25, 2]), series("Limit", "dashed", [4, 4, 4, 3])]

    first = render_load_chart_svg(data, title='A & "B"')
    assert render_load_chart_svg(data, title='A & "B"') == first
    root = parse(first)
    assert root.get("role") == "img"
    assert root.get("aria-label").startswith('A & "B"')
