from django.urls import path, register_converter

from clinical_ai.inference import views


class ModelIdConverter:
    """A model id as manifests spell it (lower-case letters, digits and '-'), nothing else."""

    regex = r"[a-z0-9][a-z0-9-]{0,62}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(ModelIdConverter, "model_id")

app_name = "inference"

urlpatterns = [
    path("", views.model_list_view, name="model_list"),
    path("<model_id:model_id>/", views.model_detail_view, name="model_detail"),
    path("<model_id:model_id>/configure", views.model_configure_view, name="model_configure"),
    path("<model_id:model_id>/shadow", views.model_shadow_view, name="model_shadow"),
    path("<model_id:model_id>/promote", views.model_promote_view, name="model_promote"),
    path("<model_id:model_id>/rollback", views.model_rollback_view, name="model_rollback"),
]
