from django.apps import AppConfig


class EnvelopesConfig(AppConfig):
    name = "microgrid.envelopes"
    label = "envelopes"
    verbose_name = "Operating envelopes (OSCP 2.0)"

    def ready(self):
        from microgrid.envelopes import receivers  # noqa: F401  (connects the receivers)
