from django.apps import AppConfig


class BalancingConfig(AppConfig):
    name = "balancing"
    label = "balancing"
    verbose_name = "Balancing cycles and breaches"

    def ready(self):
        from balancing import receivers  # noqa: F401  (connects the receivers)
