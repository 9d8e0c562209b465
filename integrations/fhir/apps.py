from django.apps import AppConfig


class FhirConfig(AppConfig):
    name = "integrations.fhir"
    label = "fhir"
