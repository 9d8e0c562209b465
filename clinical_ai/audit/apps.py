from django.apps import AppConfig
from django.core import checks


class AuditConfig(AppConfig):
    name = "clinical_ai.audit"
    label = "audit"

    def ready(self) -> None:
        from clinical_ai.audit.checks import check_retention

        checks.register(check_retention)
