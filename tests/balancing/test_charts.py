"""Load against limit per node: one computation, drawn as SVG (Manage) and PNG (simulator)."""

from balancing.charts import load_against_limit, svg_series
from microgrid.topology.diagram import render_load_chart_svg


def row(node_id, limit, uncontrolled, allocated):
    return {
        "node_id": node_id,
        "effective_limit_kw": limit,
        "uncontrolled_load_kw": uncontrolled,
        "allocated_kw": allocated,
    }


def test_series_per_node_in_first_seen_order_with_gaps_where_a_node_was_absent():
    chart = load_against_limit(
        [
            ("10:00", [row("grid", 500, 40.0, 100.0)]),
            ("10:01", [row("grid", 500, 41.0, 99.5), row("sb-1", 300, 0.0, 99.5)]),
            ("10:02", [row("sb-1", 250, 0.0, 80.25)]),
        ]
    )
    assert chart.x == ["10:00", "10:01", "10:02"]
    assert list(chart.nodes) == ["grid", "sb-1"]
    grid, sb1 = chart.nodes["grid"], chart.nodes["sb-1"]
    assert grid.limit == [500, 500, None]
    assert grid.load == [140.0, 140.5, None]
    assert sb1.limit == [None, 300, 250]
    assert sb1.load == [None, 99.5, 80.25]


def test_the_svg_adapter_draws_load_as_an_area_and_the_limit_dashed():
    chart = load_against_limit([("10:00", [row("grid", 500, 40.0, 100.0)])])
    grid = chart.nodes["grid"]
    series = svg_series(chart.x, grid.load, grid.limit)
    assert [(s["style"], s["points"]) for s in series] == [
        ("area", [("10:00", 140.0)]),
        ("dashed", [("10:00", 500)]),
    ]
    svg = render_load_chart_svg(series, title="grid")
    assert 'data-style="area"' in svg and 'data-style="dashed"' in svg


def test_the_png_adapter_draws_the_same_series(tmp_path):
    from simulator.artifacts import render_chart

    lines = [
        {"t_s": 0, "nodes": [row("grid", 500, 40.0, 100.0)]},
        {"t_s": 120, "nodes": [row("grid", 450, 41.0, 99.0), row("sb-1", 300, 0.0, 99.0)]},
    ]
    render_chart(tmp_path / "chart.png", lines, title="MG", nodes=["grid", "sb-1", "gone"])
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
