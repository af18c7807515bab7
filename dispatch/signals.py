"""Signals of the dispatch app: the channels the apps above add (the simulator, OCPP stations).

Each is a contribution collected with `microgrid.common.signals.collect`; receivers live in
the contributing app's `receivers.py` (dispatch's own webhook too), connected when its
`AppConfig.ready()` imports them.

- `channel_backends()` -> `{channel name: backend}`: what sends a batch on that channel
  (`dispatch.channels.ChannelBackend`).
- `channel_resolvers(microgrid, config)` -> `(priority, channel name or None)`: which channel
  a microgrid's setpoints take now; of the receivers that name one, the lowest priority wins
  (the simulator's 10, while a run is active for the microgrid, before the webhook's 50);
  with none, PULL.
- `charger_channels(microgrid)` -> `{asset_id: channel name}`: the chargers a channel of their
  own serves (OCPP stations); the others follow the microgrid's channel. One query.
"""

from django.dispatch import Signal

channel_backends = Signal()
channel_resolvers = Signal()
charger_channels = Signal()
