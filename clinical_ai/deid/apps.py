from django.apps import AppConfig


class DeidConfig(AppConfig):
    name = "clinical_ai.deid"
    label = "deid"
