from django.apps import AppConfig


class FleetConfig(AppConfig):
    name = "microgrid.fleet"
    label = "fleet"
    verbose_name = "Fleet overview"

    def ready(self):
        from django.db.models.signals import post_save

        from balancing.models import Cycle
        from microgrid.fleet import services

        post_save.connect(
            services.on_cycle_saved, sender=Cycle, dispatch_uid="fleet-microgrid-state"
        )
