from django.apps import AppConfig


class HospitalsConfig(AppConfig):
    name = "hospitals"
    verbose_name = "Hospitals and access"

    def ready(self):
        from . import security, signals  # noqa: F401
