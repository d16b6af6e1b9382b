from django.apps import AppConfig


class FhirConfig(AppConfig):
    name = "fhir_facade"
    verbose_name = "FHIR R4 facade"
