"""Signals of the telemetry app (the one mechanism: `microgrid.common.signals`).

- `session_changed(microgrid_id, asset_id)`: after the commit of a change of a charger's
  session (`charger_session_put` with other values than it had, `charger_session_delete` of
  one that existed; whoever calls them: the integration API, the OCPP gateway). A departure
  or an energy need moves who is served first (spec 4.3, "Departures"): balancing answers
  with a SESSION_CHANGE cycle.
"""

from django.dispatch import Signal

session_changed = Signal()
