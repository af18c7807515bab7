"""Server-rendered SVG pictures for the Manage pages.

This room turns plain data (Microgrid Node and asset dicts, load/limit
series) into self-contained inline ``<svg>`` markup that a Django template
can drop in with ``|safe``. It knows nothing about models, requests or
settings: views load the tree in one query, turn it into dicts and call
these pure functions, so the pictures work without JavaScript and the same
input always yields the same string.

- ``render_topology_svg`` draws the node tree top-down, with asset chips
  under each node box.
- ``layout_tree`` exposes the geometry so tests (and image maps, if ever
  needed) can check it without parsing SVG.
- ``render_load_chart_svg`` draws load against limit over recent cycles.

Colours mirror the palette in ``static/css/app.css`` (the ``--kind-*`` and
``--asset-*`` custom properties); change both together.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from microgrid.topology.tree import depths, is_root

__all__ = ["layout_tree", "render_load_chart_svg", "render_topology_svg"]

# Same stacks as app.css: no web fonts, so the SVG renders offline.
FONT_SANS = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
FONT_MONO = "ui-monospace, SFMono-Regular, Menlo, Consolas, 'Liberation Mono', monospace"

TEXT = "#1f2937"
MUTED = "#64748b"
EDGE = "#94a3b8"
GRID_LINE = "#e5e9f0"
ACCENT = "#0b5fae"
WARN = "#b45309"

# (label, stroke, tint) per Microgrid Node kind.
NODE_KINDS: dict[str, tuple[str, str, str]] = {
    "GRID_CONNECTION": ("Grid connection", "#4338ca", "#eef2ff"),
    "SWITCHBOARD": ("Switchboard", "#0f766e", "#ecfdf8"),
    "FEEDER": ("Feeder", "#4d7c0f", "#f4fbe7"),
    "CHARGER_GROUP": ("Charger group", "#b45309", "#fff7ed"),
}
UNKNOWN_KIND = ("", "#64748b", "#f1f5f9")

# (singular, plural, text, fill, border) per asset kind; dict order is chip order.
ASSET_KINDS: dict[str, tuple[str, str, str, str, str]] = {
    "CHARGER": ("charger", "chargers", "#9a3412", "#fff7ed", "#fed7aa"),
    "BATTERY": ("battery", "batteries", "#6d28d9", "#f5f3ff", "#ddd6fe"),
    "PV": ("PV", "PV", "#854d0e", "#fefce8", "#fde68a"),
    "SITE_LOAD": ("site load", "site loads", "#475569", "#f8fafc", "#cbd5e1"),
    "METER": ("meter", "meters", "#0e7490", "#ecfeff", "#a5f3fc"),
}
UNKNOWN_ASSET = ("", "", "#475569", "#f8fafc", "#cbd5e1")

# Geometry of the topology diagram, in px. Boxes have a fixed width so the
# layout needs no font metrics; long texts are shortened and kept whole in <title>.
BOX_W = 192
BOX_H = 64
H_GAP = 24
ROOT_GAP = 48
V_GAP = 44
MARGIN = 16
STACK_MIN = 2
STACK_INDENT = 24
STACK_TOP = 22
STACK_GAP = 12
CHIP_H = 18
CHIP_GAP = 4
CHIP_TOP = 6
CHIP_FONT_W = 6.2
MAX_CHIP_NAMES = 12

Rect = tuple[int, int, int, int]

# Load against the effective limit, by headroom: (text/bar colour, box tint).
NEAR_LIMIT_PCT = 90.0
HEADROOM_COLORS = {
    "ok": ("#15803d", "#ffffff"),
    "near": ("#b45309", "#fff7ed"),
    "over": ("#b91c1c", "#fef2f2"),
}


def headroom(pct: float | None) -> str | None:
    """ok below 90 % of the limit, near from 90 %, over above 100 %; None when unknown."""
    if pct is None:
        return None
    return "over" if pct > 100.0 else "near" if pct >= NEAR_LIMIT_PCT else "ok"


# --------------------------------------------------------------------------- helpers


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _text(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _number(value: object) -> float | None:
    """A finite float, or None for anything a page could not sensibly plot."""
    # bool is an int subclass; True kW is a data error, not 1 kW.
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def format_kw(value: float) -> str:
    """``250 kW``, ``7.4 kW``, ``1,250.125 kW``: the spec keeps at most 3 decimals."""
    text = f"{value:,.3f}".rstrip("0").rstrip(".")
    return f"{'0' if text in ('-0', '') else text} kW"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 1)] + "\u2026"


def _n(value: float) -> str:
    """Coordinates with one decimal, so output is stable and compact."""
    text = f"{value:.1f}"
    if text.endswith(".0"):
        text = text[:-2]
    return "0" if text == "-0" else text


def _int(value: object, default: int, low: int, high: int) -> int:
    number = _number(value)
    if number is None:
        return default
    return int(min(max(number, low), high))


# --------------------------------------------------------------------------- topology


@dataclass(frozen=True)
class _Node:
    node_id: str
    parent_id: str | None
    kind: str
    name: str
    rating_kw: float | None


@dataclass(frozen=True)
class _Chip:
    text: str
    kind: str
    width: int
    title: str


@dataclass
class _Forest:
    nodes: dict[str, _Node]
    roots: list[str]
    children: dict[str, list[str]]
    preorder: list[str]
    # Why a node is drawn as an extra root (missing parent, cycle).
    notes: dict[str, str]


def _clean_nodes(nodes: Iterable[Mapping] | None) -> dict[str, _Node]:
    cleaned: dict[str, _Node] = {}
    for raw in nodes or ():
        if not isinstance(raw, Mapping):
            continue
        node_id = _text(raw.get("node_id"))
        # A repeated id is a validation error shown elsewhere; drawing it twice
        # would make edges ambiguous, so the first occurrence wins.
        if not node_id or node_id in cleaned:
            continue
        parent_id = _text(raw.get("parent_id")) or None
        cleaned[node_id] = _Node(
            node_id=node_id,
            parent_id=parent_id,
            kind=_text(raw.get("kind")),
            name=_text(raw.get("name")),
            rating_kw=_number(raw.get("physical_rating_kw")),
        )
    return cleaned


def _build_forest(nodes: dict[str, _Node]) -> _Forest:
    all_children: dict[str, list[str]] = {node_id: [] for node_id in nodes}
    notes: dict[str, str] = {}
    first_roots: list[tuple[int, str]] = []
    for node_id in sorted(nodes):
        parent_id = nodes[node_id].parent_id
        if parent_id is None:
            first_roots.append((0 if nodes[node_id].kind == "GRID_CONNECTION" else 1, node_id))
        elif parent_id not in nodes:
            notes[node_id] = f"parent {parent_id} not found"
            first_roots.append((2, node_id))
        elif parent_id != node_id:
            all_children[parent_id].append(node_id)
    for kids in all_children.values():
        kids.sort()

    forest = _Forest(nodes, [], {node_id: [] for node_id in nodes}, [], notes)
    placed: set[str] = set()

    def grow(root: str) -> None:
        # Iterative on purpose: a long chain must not hit the recursion limit.
        placed.add(root)
        forest.roots.append(root)
        stack = [root]
        while stack:
            node_id = stack.pop()
            forest.preorder.append(node_id)
            kids = [kid for kid in all_children[node_id] if kid not in placed]
            placed.update(kids)
            forest.children[node_id] = kids
            stack.extend(reversed(kids))

    for _, root in sorted(first_roots):
        grow(root)

    # Whatever is still unplaced sits on a parent cycle or hangs below one.
    # Break each cycle at its smallest id so the picture is stable.
    while len(placed) < len(nodes):
        start = min(node_id for node_id in nodes if node_id not in placed)
        walk: list[str] = []
        seen: set[str] = set()
        current: str | None = start
        while current is not None and current in nodes and current not in seen:
            seen.add(current)
            walk.append(current)
            current = nodes[current].parent_id
        cycle = walk[walk.index(current) :] if current in seen else [start]
        breaker = min(cycle)
        members = ", ".join(sorted(cycle))
        notes[breaker] = (
            "is its own parent" if len(cycle) == 1 else f"in a parent cycle ({members})"
        )
        grow(breaker)
    return forest


def _asset_power(raw: Mapping, kind: str) -> float | None:
    keys = ("max_power_kw", "rated_power_kw")
    if kind != "CHARGER":
        keys = ("rated_power_kw", "max_power_kw")
    for key in keys:
        value = _number(raw.get(key))
        if value is not None:
            return value
    return None


def _chip_text(kind: str, count: int, total_kw: float | None) -> str:
    singular, plural = ASSET_KINDS.get(kind, UNKNOWN_ASSET)[:2]
    if not singular:
        singular = plural = kind.replace("_", " ").lower() or "asset"
    power = "" if kind == "METER" or total_kw is None else format_kw(total_kw)
    if count == 1:
        label = singular[:1].upper() + singular[1:]
        return f"{label} {power}".strip()
    text = f"{count} {plural}"
    return f"{text} \u00b7 {power}" if power else text


def _chips_by_node(
    assets: Iterable[Mapping] | None, nodes: dict[str, _Node]
) -> tuple[dict[str, list[_Chip]], int, int]:
    """Chips per node and kind, plus how many assets hang on drawn nodes and how many don't."""
    grouped: dict[str, dict[str, list[tuple[str, str, float | None]]]] = {}
    seen_ids: set[str] = set()
    attached = unattached = 0
    for raw in assets or ():
        if not isinstance(raw, Mapping):
            continue
        asset_id = _text(raw.get("asset_id"))
        if asset_id:
            if asset_id in seen_ids:
                continue
            seen_ids.add(asset_id)
        node_id = _text(raw.get("node_id"))
        if node_id not in nodes:
            unattached += 1
            continue
        attached += 1
        kind = _text(raw.get("kind")) or "ASSET"
        entry = (asset_id, _text(raw.get("name")), _asset_power(raw, kind))
        grouped.setdefault(node_id, {}).setdefault(kind, []).append(entry)

    order = {kind: index for index, kind in enumerate(ASSET_KINDS)}
    chips: dict[str, list[_Chip]] = {}
    for node_id, kinds in grouped.items():
        node_chips = []
        for kind in sorted(kinds, key=lambda k: (order.get(k, len(order)), k)):
            entries = sorted(kinds[kind])
            powers = [p for _, _, p in entries if p is not None]
            # Summing in sorted order keeps float rounding, and so the text, stable.
            total = sum(powers) if powers else None
            text = _chip_text(kind, len(entries), total)
            width = min(int(len(text) * CHIP_FONT_W) + 16, BOX_W)
            if width == BOX_W:
                text = _shorten(text, int((BOX_W - 16) / CHIP_FONT_W))
            names = [f"{a} ({n})" if n and a else (a or n or "unnamed") for a, n, _ in entries]
            listed = ", ".join(names[:MAX_CHIP_NAMES])
            if len(names) > MAX_CHIP_NAMES:
                listed += f" and {len(names) - MAX_CHIP_NAMES} more"
            node_chips.append(_Chip(text, kind, width, f"{text}: {listed}"))
        chips[node_id] = node_chips
    return chips, attached, unattached


def _chip_rows(chips: list[_Chip]) -> list[list[_Chip]]:
    rows: list[list[_Chip]] = []
    used = BOX_W + 1
    for chip in chips:
        if rows and used + CHIP_GAP + chip.width <= BOX_W:
            rows[-1].append(chip)
            used += CHIP_GAP + chip.width
        else:
            rows.append([chip])
            used = chip.width
    return rows


def _footprint_height(rows: list[list[_Chip]]) -> int:
    if not rows:
        return BOX_H
    return BOX_H + CHIP_TOP + len(rows) * CHIP_H + (len(rows) - 1) * CHIP_GAP


@dataclass
class _Layout:
    forest: _Forest
    rects: dict[str, Rect]
    stacked: set[str]
    chip_rows: dict[str, list[list[_Chip]]]
    width: int
    height: int
    attached: int
    unattached: int


def _layout(nodes: Iterable[Mapping] | None, assets: Iterable[Mapping] | None) -> _Layout:
    forest = _build_forest(_clean_nodes(nodes))
    chips, attached, unattached = _chips_by_node(assets, forest.nodes)
    rows = {node_id: _chip_rows(chips.get(node_id, [])) for node_id in forest.preorder}
    heights = {node_id: _footprint_height(rows[node_id]) for node_id in forest.preorder}
    kids = forest.children

    parent = {kid: node_id for node_id in forest.preorder for kid in kids[node_id]}
    depth = depths((node_id, parent.get(node_id)) for node_id in forest.preorder)

    # Leaf-only families (charger groups under a feeder, typically) go in a
    # column under their parent instead of a row: that keeps a 60-node depot
    # a few screens wide rather than dozens.
    stacked = {
        node_id
        for node_id in forest.preorder
        if len(kids[node_id]) >= STACK_MIN and not any(kids[kid] for kid in kids[node_id])
    }
    in_column = {kid for node_id in stacked for kid in kids[node_id]}

    # Post-order (reversed pre-order): subtree widths and where the box sits in it.
    sub_w: dict[str, int] = {}
    box_off: dict[str, int] = {}
    for node_id in reversed(forest.preorder):
        children = kids[node_id]
        if not children:
            sub_w[node_id], box_off[node_id] = BOX_W, 0
        elif node_id in stacked:
            sub_w[node_id], box_off[node_id] = BOX_W + STACK_INDENT, 0
        else:
            span = sum(sub_w[kid] for kid in children) + H_GAP * (len(children) - 1)
            sub_w[node_id] = max(BOX_W, span)
            start = (sub_w[node_id] - span) // 2
            first = start + box_off[children[0]]
            last = start + span - sub_w[children[-1]] + box_off[children[-1]]
            box_off[node_id] = (first + last) // 2

    # Rows align by depth so a level reads as one line across the picture.
    row_h: dict[int, int] = {}
    for node_id in forest.preorder:
        if node_id not in in_column:
            row_h[depth[node_id]] = max(row_h.get(depth[node_id], 0), heights[node_id])
    row_y = {0: MARGIN}
    for level in range(1, max(depth.values(), default=0) + 1):
        row_y[level] = row_y[level - 1] + row_h.get(level - 1, 0) + V_GAP

    left: dict[str, int] = {}
    top: dict[str, int] = {}
    cursor = MARGIN
    for root in forest.roots:
        left[root] = cursor
        cursor += sub_w[root] + ROOT_GAP

    rects: dict[str, Rect] = {}
    for node_id in forest.preorder:
        x = left[node_id] + box_off[node_id]
        y = top.get(node_id, row_y[depth[node_id]])
        rects[node_id] = (x, y, BOX_W, heights[node_id])
        children = kids[node_id]
        if node_id in stacked:
            next_y = y + heights[node_id] + STACK_TOP
            for kid in children:
                left[kid], top[kid] = x + STACK_INDENT, next_y
                next_y += heights[kid] + STACK_GAP
        elif children:
            span = sum(sub_w[kid] for kid in children) + H_GAP * (len(children) - 1)
            next_x = left[node_id] + (sub_w[node_id] - span) // 2
            for kid in children:
                left[kid] = next_x
                next_x += sub_w[kid] + H_GAP

    width = max((x + w for x, _, w, _ in rects.values()), default=0) + MARGIN
    height = max((y + h for _, y, _, h in rects.values()), default=0) + MARGIN
    return _Layout(forest, rects, stacked, rows, width, height, attached, unattached)


def layout_tree(
    nodes: Iterable[Mapping] | None, assets: Iterable[Mapping] | None = None
) -> dict[str, Rect]:
    """Where each Microgrid Node is drawn: ``{node_id: (x, y, w, h)}`` in SVG px.

    The rectangle is the node's whole footprint: its box (``BOX_H`` tall at
    the top) plus the asset chips under it, so no two rectangles overlap.
    """
    return _layout(nodes, assets).rects


def _edge_paths(layout: _Layout) -> list[str]:
    forest, rects = layout.forest, layout.rects
    paths = []
    for node_id in forest.preorder:
        children = forest.children[node_id]
        if not children:
            continue
        x, y, w, h = rects[node_id]
        cx, bottom = x + w // 2, y + BOX_H
        for kid in children:
            kx, ky, kw, _ = rects[kid]
            if node_id in layout.stacked:
                # Down past the chips, across to a trunk on the left, into the box side.
                bus, trunk = y + h + STACK_TOP // 2, kx - STACK_INDENT // 2
                d = f"M{cx},{bottom}V{bus}H{trunk}V{ky + BOX_H // 2}H{kx}"
            else:
                bus = ky - V_GAP // 2
                d = f"M{cx},{bottom}V{bus}H{kx + kw // 2}V{ky}"
            paths.append(f'<path d="{d}" data-from="{_esc(node_id)}" data-to="{_esc(kid)}"/>')
    return paths


def _node_markup(
    layout: _Layout,
    node_id: str,
    highlighted: bool,
    href: str | None,
    load: Mapping | None = None,
) -> str:
    node = layout.forest.nodes[node_id]
    x, y, w, h = layout.rects[node_id]
    label, stroke, tint = NODE_KINDS.get(node.kind, UNKNOWN_KIND)
    label = label or node.kind.replace("_", " ").capitalize() or "Unknown kind"
    rating = format_kw(node.rating_kw) if node.rating_kw is not None else "no rating"
    note = layout.forest.notes.get(node_id)
    chips = [chip for row in layout.chip_rows[node_id] for chip in row]

    title = f"{node.name or node_id} ({node_id}) \u2014 {label}, {rating}"
    if chips:
        title += "; " + "; ".join(chip.text for chip in chips)
    if note:
        title += f"; drawn apart: {note}"
    pct = _number(load.get("load_pct")) if load else None
    state = headroom(pct)
    if load and state:
        title += (
            f"; load {format_kw(_number(load.get('load_kw')) or 0.0)} of "
            f"{format_kw(_number(load.get('limit_kw')) or 0.0)} effective limit ({pct:.0f} %)"
        )

    parts = [
        f'<g class="mg-node" data-node-id="{_esc(node_id)}" data-kind="{_esc(node.kind)}"'
        + (' data-highlight="true"' if highlighted else "")
        + ">"
    ]
    if href:
        parts.append(f'<a href="{_esc(href)}">')
    parts.append(f"<title>{_esc(title)}</title>")
    if highlighted:
        parts.append(
            f'<rect class="mg-highlight" x="{x - 5}" y="{y - 5}" width="{w + 10}" '
            f'height="{BOX_H + 10}" rx="11" fill="{ACCENT}" fill-opacity="0.08" '
            f'stroke="{ACCENT}" stroke-width="3"/>'
        )
    # Nodes drawn apart because of bad data get a dashed warning outline.
    dash = f' stroke-dasharray="5 3" stroke="{WARN}"' if note else f' stroke="{stroke}"'
    root = is_root(parent_id=node.parent_id, kind=node.kind)
    box_fill = HEADROOM_COLORS[state][1] if state else "#ffffff"
    parts.append(
        f'<rect class="mg-box" x="{x}" y="{y}" width="{w}" height="{BOX_H}" rx="8" '
        f'fill="{box_fill}"{dash} stroke-width="{2 if root else 1.5}"/>'
    )
    if state:
        color = HEADROOM_COLORS[state][0]
        bar_w = w - 16
        filled = max(2, round(bar_w * min(pct, 100.0) / 100.0))
        parts.append(
            f'<g class="mg-load" data-headroom="{state}" data-load-pct="{pct:.1f}">'
            f'<text x="{x + w - 10}" y="{y + 20}" font-size="12" font-weight="700" '
            f'text-anchor="end" fill="{color}">{pct:.0f} %</text>'
            f'<rect x="{x + 8}" y="{y + BOX_H - 5}" width="{bar_w}" height="3" rx="1.5" '
            f'fill="{GRID_LINE}"/>'
            f'<rect x="{x + 8}" y="{y + BOX_H - 5}" width="{filled}" height="3" rx="1.5" '
            f'fill="{color}"/></g>'
        )
    name = _shorten(node.name or node_id, 16 if state else 22)
    parts.append(
        f'<text x="{x + 10}" y="{y + 20}" font-size="13" font-weight="600" '
        f'fill="{TEXT}">{_esc(name)}</text>'
    )
    parts.append(
        f'<text x="{x + 10}" y="{y + 36}" font-size="11" font-family="{FONT_MONO}" '
        f'fill="{MUTED}">{_esc(_shorten(node_id, 24))}</text>'
    )
    # Mixed case, unlike the HTML .kind label: upper case would crowd the rating.
    pill = _shorten(label, 18)
    pill_w = int(len(pill) * 6.2) + 14
    parts.append(
        f'<rect x="{x + 8}" y="{y + 43}" width="{pill_w}" height="16" rx="8" fill="{tint}"/>'
        f'<text x="{x + 15}" y="{y + 55}" font-size="10.5" font-weight="600" '
        f'fill="{stroke}">{_esc(pill)}</text>'
    )
    rating_fill = TEXT if node.rating_kw is not None else MUTED
    parts.append(
        f'<text x="{x + w - 10}" y="{y + 55}" font-size="12" font-weight="600" '
        f'text-anchor="end" fill="{rating_fill}">{_esc(rating)}</text>'
    )
    if href:
        parts.append("</a>")

    chip_y = y + BOX_H + CHIP_TOP
    for row in layout.chip_rows[node_id]:
        row_w = sum(chip.width for chip in row) + CHIP_GAP * (len(row) - 1)
        chip_x = x + (w - row_w) // 2
        for chip in row:
            fg, fill, border = ASSET_KINDS.get(chip.kind, UNKNOWN_ASSET)[2:]
            parts.append(
                f'<g class="mg-chip" data-asset-kind="{_esc(chip.kind)}">'
                f"<title>{_esc(chip.title)}</title>"
                f'<rect x="{chip_x}" y="{chip_y}" width="{chip.width}" height="{CHIP_H}" '
                f'rx="9" fill="{fill}" stroke="{border}"/>'
                f'<text x="{chip_x + chip.width // 2}" y="{chip_y + 13}" font-size="11" '
                f'text-anchor="middle" fill="{fg}">{_esc(chip.text)}</text></g>'
            )
            chip_x += chip.width + CHIP_GAP
        chip_y += CHIP_H + CHIP_GAP
    parts.append("</g>")
    return "".join(parts)


def _svg_open(width: int, height: int, css_class: str, role: str, label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{css_class}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="{role}" '
        f'aria-label="{_esc(label)}" font-family="{FONT_SANS}" font-size="12">'
        f"<title>{_esc(label)}</title>"
    )


def render_topology_svg(
    nodes: Iterable[Mapping] | None,
    assets: Iterable[Mapping] | None,
    *,
    highlight_node_ids: Iterable[str] = frozenset(),
    node_href: Callable[[str], str | None] | None = None,
    loads: Mapping[str, Mapping] | None = None,
) -> str:
    """The Microgrid Node tree as an inline ``<svg>`` (root at the top).

    ``nodes``: dicts with ``node_id``, ``parent_id``, ``kind``, ``name``,
    ``physical_rating_kw``. ``assets``: dicts with ``asset_id``, ``node_id``,
    ``kind``, ``name`` and ``max_power_kw`` (chargers) or ``rated_power_kw``.
    Odd input (missing parents, cycles, repeated ids, bad numbers) is drawn,
    never raised: nodes that cannot hang from a parent become extra roots
    with a dashed outline. ``node_href(node_id)`` turns a node box into a link.
    ``loads``: node_id -> ``{load_kw, limit_kw, load_pct}`` (the latest cycle's): each
    such node shows its load as % of its limit, with a bar and a tint by headroom.
    """
    layout = _layout(nodes, assets)
    forest = layout.forest
    highlights = {_text(node_id) for node_id in highlight_node_ids or ()}

    if not forest.nodes:
        width, height = 360, 72
        return (
            _svg_open(width, height, "topology-diagram", "img", "Topology diagram: no nodes")
            + f'<text x="{width // 2}" y="{height // 2 + 5}" text-anchor="middle" '
            f'font-size="13" fill="{MUTED}">No Microgrid Nodes yet</text></svg>'
        )

    hrefs = {node_id: node_href(node_id) if node_href else None for node_id in forest.preorder}
    node_count, asset_count = len(forest.nodes), layout.attached
    label = (
        f"Topology diagram: {node_count} Microgrid Node{'s' if node_count != 1 else ''}, "
        f"{asset_count} asset{'s' if asset_count != 1 else ''}"
    )
    if len(forest.roots) > 1:
        label += f", {len(forest.roots)} separate trees"
    # role="img" hides the children from assistive tech, which would swallow
    # the node links; with links the picture is a group of links instead.
    role = "group" if any(hrefs.values()) else "img"

    height = layout.height
    if layout.unattached:
        height += 20
    parts = [_svg_open(layout.width, height, "topology-diagram", role, label)]
    parts.append(f'<g class="mg-edges" fill="none" stroke="{EDGE}" stroke-width="1.5">')
    parts.extend(_edge_paths(layout))
    parts.append("</g>")
    # Boxes come after edges so chips sit on top of the trunk lines.
    parts.append('<g class="mg-nodes">')
    for node_id in forest.preorder:
        parts.append(
            _node_markup(
                layout,
                node_id,
                node_id in highlights,
                hrefs[node_id],
                (loads or {}).get(node_id),
            )
        )
    parts.append("</g>")
    if layout.unattached:
        count = layout.unattached
        parts.append(
            f'<text x="{MARGIN}" y="{height - MARGIN}" font-size="11" fill="{WARN}">'
            f"{count} asset{'s' if count != 1 else ''} attached to no drawn node</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------- load chart

CHART_STYLES = ("line", "step", "area", "dashed")
# Limits (dashed) read as red-ish, measured series as blues and greens.
DATA_COLORS = ("#0b5fae", "#0f766e", "#7c3aed", "#a16207", "#475569", "#be185d")
LIMIT_COLORS = ("#b91c1c", "#c2410c", "#9333ea")


@dataclass
class _Series:
    label: str
    style: str
    values: dict[int, float | None]
    color: str


def _nice_ticks(low: float, high: float, target: int = 5) -> list[float]:
    if high <= low:
        high = low + 1
    raw = (high - low) / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    # Small tolerances stop 600/100 = 6.0000001 from adding an empty tick.
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    return [round(i * step, 6) for i in range(first, last + 1)]


def _clean_series(series: Iterable[Mapping] | None) -> tuple[list[_Series], list[str]]:
    labels: list[str] = []
    index: dict[str, int] = {}
    cleaned: list[_Series] = []
    data_i = limit_i = 0
    for position, raw in enumerate(series or ()):
        if not isinstance(raw, Mapping):
            continue
        style = raw.get("style")
        style = style if style in CHART_STYLES else "line"
        if style == "dashed":
            color = LIMIT_COLORS[limit_i % len(LIMIT_COLORS)]
            limit_i += 1
        else:
            color = DATA_COLORS[data_i % len(DATA_COLORS)]
            data_i += 1
        values: dict[int, float | None] = {}
        for point in raw.get("points") or ():
            try:
                x_label, value = point
            except (TypeError, ValueError):
                continue
            x_label = _text(x_label)
            if x_label not in index:
                index[x_label] = len(labels)
                labels.append(x_label)
            values[index[x_label]] = _number(value)
        label = _text(raw.get("label")) or f"Series {position + 1}"
        cleaned.append(_Series(label, style, values, color))
    return cleaned, labels


def _segments(values: dict[int, float | None], count: int) -> list[list[int]]:
    """Runs of consecutive x positions with a value; a None breaks the line."""
    runs: list[list[int]] = []
    current: list[int] = []
    for i in range(count):
        if values.get(i) is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(i)
    if current:
        runs.append(current)
    return runs


def render_load_chart_svg(
    series: Iterable[Mapping] | None,
    *,
    width: int = 720,
    height: int = 260,
    title: str = "",
) -> str:
    """Load and limits over time as an inline ``<svg>`` chart.

    ``series``: ``{"label", "points": [(x_label, kW or None), ...], "style"}``
    with ``style`` one of ``line``, ``step``, ``area`` (filled, for load) and
    ``dashed`` (a dashed step line, for limits). A None value leaves a gap.
    """
    width = _int(width, 720, 240, 4000)
    height = _int(height, 260, 120, 2000)
    title = _text(title)
    cleaned, labels = _clean_series(series)
    finite = [v for s in cleaned for v in s.values.values() if v is not None]
    aria = title or "Load chart"

    if not finite:
        parts = [_svg_open(width, height, "load-chart", "img", f"{aria}: no data yet")]
        if title:
            parts.append(
                f'<text x="8" y="18" font-size="13" font-weight="600" fill="{TEXT}">'
                f"{_esc(title)}</text>"
            )
        parts.append(
            f'<text x="{width // 2}" y="{height // 2 + 5}" text-anchor="middle" '
            f'font-size="13" fill="{MUTED}">No data yet</text></svg>'
        )
        return "".join(parts)

    # Legend entries flow left to right and wrap, above the plot.
    legend: list[tuple[_Series, str, int, int]] = []
    lx, ly, legend_rows = 8, 0, 1
    for s in cleaned:
        # Room for "load (uncontrolled + allocated) kW": the legend wraps, it need not cut.
        text = _shorten(s.label, 60)
        item_w = 26 + int(len(text) * 6.6) + 16
        if lx > 8 and lx + item_w > width - 8:
            lx, ly, legend_rows = 8, ly + 18, legend_rows + 1
        legend.append((s, text, lx, ly))
        lx += item_w
    title_h = 22 if title else 0
    plot_top = 8 + title_h + legend_rows * 18 + 10

    ticks = _nice_ticks(min(0.0, *finite), max(0.0, *finite))
    tick_texts = [format_kw(t) for t in ticks]
    plot_left = max(44, int(max(len(t) for t in tick_texts) * 6.4) + 14)
    plot_right = width - 12
    height = max(height, plot_top + 60 + 26)
    plot_bottom = height - 26
    plot_w, plot_h = plot_right - plot_left, plot_bottom - plot_top
    low, high = ticks[0], ticks[-1]

    def y_of(value: float) -> float:
        return plot_bottom - (value - low) / (high - low) * plot_h

    band = plot_w / len(labels)

    def x_mid(i: int) -> float:
        return plot_left + (i + 0.5) * band

    def x_edge(i: int) -> str:
        return _n(plot_left + i * band)

    summary = ", ".join(s.label for s in cleaned)
    parts = [_svg_open(width, height, "load-chart", "img", f"{aria} ({summary})")]
    if title:
        parts.append(
            f'<text x="8" y="18" font-size="13" font-weight="600" fill="{TEXT}">'
            f"{_esc(title)}</text>"
        )

    parts.append('<g class="axes" font-size="11">')
    for tick, text in zip(ticks, tick_texts, strict=True):
        ty = _n(y_of(tick))
        stroke = EDGE if tick == 0 else GRID_LINE
        parts.append(
            f'<line x1="{plot_left}" y1="{ty}" x2="{plot_right}" y2="{ty}" stroke="{stroke}"/>'
            f'<text x="{plot_left - 6}" y="{_n(y_of(tick) + 4)}" text-anchor="end" '
            f'fill="{MUTED}">{_esc(text)}</text>'
        )
    parts.append(
        f'<line x1="{plot_left}" y1="{plot_top}" x2="{plot_left}" y2="{plot_bottom}" '
        f'stroke="{EDGE}"/>'
    )
    # Show every k-th x label so estimated label widths never collide.
    shown = [_shorten(label, 14) for label in labels]
    widest = max(len(text) for text in shown) * 6.2 + 10
    every = max(1, math.ceil(widest / band))
    for i, text in enumerate(shown):
        if i % every == 0:
            parts.append(
                f'<text x="{_n(x_mid(i))}" y="{plot_bottom + 17}" text-anchor="middle" '
                f'fill="{MUTED}"><title>{_esc(labels[i])}</title>{_esc(text)}</text>'
            )
    parts.append("</g>")

    base = y_of(min(max(0.0, low), high))
    for number, s in enumerate(cleaned):
        runs = _segments(s.values, len(labels))
        points = [v for v in s.values.values() if v is not None]
        line: list[str] = []
        area: list[str] = []
        for run in runs:
            ys = [_n(y_of(s.values[i])) for i in run]  # type: ignore[arg-type]
            if s.style in ("step", "dashed"):
                # A step holds each value across its whole band.
                d = f"M{x_edge(run[0])},{ys[0]}H{x_edge(run[0] + 1)}"
                for i, y in zip(run[1:], ys[1:], strict=True):
                    d += f"V{y}H{x_edge(i + 1)}"
                line.append(d)
            elif len(run) == 1:
                # A lone reading between gaps still deserves a visible mark.
                line.append(f"M{_n(x_mid(run[0]) - 2)},{ys[0]}H{_n(x_mid(run[0]) + 2)}")
            else:
                line.append(
                    "M" + "L".join(f"{_n(x_mid(i))},{y}" for i, y in zip(run, ys, strict=True))
                )
                if s.style == "area":
                    area.append(
                        f"M{_n(x_mid(run[0]))},{_n(base)}L"
                        + "L".join(f"{_n(x_mid(i))},{y}" for i, y in zip(run, ys, strict=True))
                        + f"L{_n(x_mid(run[-1]))},{_n(base)}Z"
                    )
        peak = format_kw(max(points)) if points else "no values"
        parts.append(
            f'<g class="series" data-series="{number}" data-style="{s.style}">'
            f"<title>{_esc(s.label)}: {len(points)} values, peak {_esc(peak)}</title>"
        )
        if area:
            parts.append(
                f'<path class="series-area" d="{"".join(area)}" fill="{s.color}" '
                f'fill-opacity="0.15" stroke="none"/>'
            )
        dash = ' stroke-dasharray="6 4"' if s.style == "dashed" else ""
        parts.append(
            f'<path class="series-line" d="{"".join(line)}" fill="none" stroke="{s.color}" '
            f'stroke-width="2" stroke-linejoin="round" stroke-linecap="round"{dash}/></g>'
        )

    parts.append(f'<g class="legend" font-size="12" transform="translate(0,{8 + title_h})">')
    for s, text, x, y in legend:
        swatch_y = y + 9
        if s.style == "area":
            parts.append(
                f'<rect x="{x}" y="{swatch_y - 5}" width="18" height="10" rx="2" '
                f'fill="{s.color}" fill-opacity="0.15" stroke="{s.color}" stroke-width="1.5"/>'
            )
        else:
            dash = ' stroke-dasharray="4 3"' if s.style == "dashed" else ""
            parts.append(
                f'<line x1="{x}" y1="{swatch_y}" x2="{x + 18}" y2="{swatch_y}" '
                f'stroke="{s.color}" stroke-width="2"{dash}/>'
            )
        parts.append(
            f'<text class="legend-item" x="{x + 24}" y="{swatch_y + 4}" fill="{TEXT}">'
            f"<title>{_esc(s.label)}</title>{_esc(text)}</text>"
        )
    parts.append("</g></svg>")
    return "".join(parts)
