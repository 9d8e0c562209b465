from django.apps import AppConfig


class SmartConfig(AppConfig):
    name = "integrations.smart"
    label = "smart"
