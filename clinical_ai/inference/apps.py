from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "clinical_ai.inference"
    label = "inference"
    verbose_name = "Inference"
    default_auto_field = "django.db.models.BigAutoField"
