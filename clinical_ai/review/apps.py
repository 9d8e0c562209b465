from django.apps import AppConfig


class ReviewConfig(AppConfig):
    name = "clinical_ai.review"
    label = "review"
    verbose_name = "Clinician review"
    default_auto_field = "django.db.models.BigAutoField"
