from django.apps import AppConfig


class DeidConfig(AppConfig):
    name = "clinical_ai.deid"
    label = "deid"

    def ready(self) -> None:
        from clinical_ai.deid import checks  # noqa: F401 (registers the system check)
