"""Signals of the topology app: what the apps above add to a microgrid's card, pages and checks.

Each is a contribution collected with `microgrid.common.signals.collect`; receivers are
connected in the contributing app's `AppConfig.ready()`.

- `card_sections(microgrid)` -> `{name: JSON-ready value}`: sections of the microgrid card
  (API and page), each in a constant number of queries.
- `card_section_fields()` -> `{name: serializer field}`: the same sections as the OpenAPI
  document states them (`topology.api.serializers.MicrogridCard`).
- `manage_tabs()` -> `[(order, key, label, url suffix), ...]`: the tabs of the Manage pages.
- `card_page_sections(microgrid)` -> `(order, template, context)`: a block of the Manage card
  page, `template` rendered with `context`.
- `node_references(microgrid)` -> `[("node" | "asset", id, {"type": ..., "id": ...}), ...]`:
  what still points at a node or asset (limits, envelope groups, capability bindings, circuit
  aliases); the topology validator refuses to remove any of them (NODE_IN_USE). One query.
- `charger_stations(microgrid)` -> `[station_id, ...]`: the OCPP charging stations of the
  microgrid, which a charger's `station_id` must name (STATION_NOT_FOUND). One query.
- `node_loads(microgrid)` -> `{node_id: {load_kw, limit_kw, load_pct, ...}}`: live load per
  node (the latest cycle's), drawn on the diagrams. One query.
"""

from django.dispatch import Signal

card_sections = Signal()
card_section_fields = Signal()
manage_tabs = Signal()
card_page_sections = Signal()
node_references = Signal()
node_loads = Signal()
charger_stations = Signal()
