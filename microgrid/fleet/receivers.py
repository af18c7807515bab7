"""What the fleet overview answers: each saved cycle updates its microgrid's fleet state."""

from __future__ import annotations

from django.db.models.signals import post_save

from balancing.models import Cycle
from microgrid.fleet import services

post_save.connect(services.on_cycle_saved, sender=Cycle, dispatch_uid="fleet-microgrid-state")
