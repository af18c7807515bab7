from django.apps import AppConfig


class EnvelopesConfig(AppConfig):
    name = "microgrid.envelopes"
    label = "envelopes"
    verbose_name = "Operating envelopes (OSCP 2.0)"

    def ready(self):
        from microgrid.envelopes import receivers  # noqa: F401  (connects the receivers)
        from microgrid.envelopes.outbound import on_cycle_completed
        from microgrid.envelopes.signals import cycle_completed

        cycle_completed.connect(on_cycle_completed, dispatch_uid="envelopes.compliance")
