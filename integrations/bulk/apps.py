from django.apps import AppConfig


class BulkConfig(AppConfig):
    name = "integrations.bulk"
    label = "bulk"
    verbose_name = "EHR sources (FHIR Bulk Data pull)"
