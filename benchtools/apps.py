from django.apps import AppConfig


class BenchtoolsConfig(AppConfig):
    name = "benchtools"
    label = "benchtools"
    verbose_name = "Benchmarks (tooling)"
