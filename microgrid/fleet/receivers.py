"""What the fleet overview answers: each stored cycle updates its microgrid's fleet state."""

from __future__ import annotations

from django.db.models.signals import post_save

from balancing.models import Cycle
from balancing.signals import cycles_created
from microgrid.fleet import services

post_save.connect(services.on_cycle_saved, sender=Cycle, dispatch_uid="fleet-microgrid-state")
# A batch of scheduled cycles is inserted at once (no post_save): one upsert for all of them.
cycles_created.connect(
    services.on_cycles_created, sender=Cycle, dispatch_uid="fleet-microgrid-states"
)
