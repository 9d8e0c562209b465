from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "clinical_ai.monitoring"
    label = "monitoring"
    verbose_name = "Post-market monitoring"
    default_auto_field = "django.db.models.BigAutoField"
