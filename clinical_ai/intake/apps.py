from django.apps import AppConfig


class IntakeConfig(AppConfig):
    name = "clinical_ai.intake"
    label = "intake"
