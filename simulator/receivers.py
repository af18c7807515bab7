"""What the simulator answers: its dispatch channel (dispatch's signals), which takes a
microgrid's setpoints while a run is active for it."""

from __future__ import annotations

from django.dispatch import receiver

from dispatch.choices import Channel
from dispatch.signals import channel_backends, channel_resolvers
from simulator.dispatch import SimulatorChannel, resolver

CHANNEL = SimulatorChannel()


@receiver(channel_backends, dispatch_uid="simulator.channel_backends")
def backends(sender, **kwargs) -> dict:
    return {Channel.SIMULATOR: CHANNEL}


@receiver(channel_resolvers, dispatch_uid="simulator.channel_resolvers")
def simulator_resolver(sender, *, microgrid, config, **kwargs) -> tuple[int, str | None]:
    # Ahead of the webhook (50): a run's setpoints go back into its simulated chargers.
    return (10, resolver(microgrid, config))
