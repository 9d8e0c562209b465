from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "clinical_ai.core"
    label = "core"
