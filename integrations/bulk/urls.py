from django.urls import path

from integrations.bulk import views

app_name = "bulk"

urlpatterns = [
    path("bulk/sources/", views.source_list_view, name="source_list"),
    path("bulk/sources/<uuid:source_id>/jwks.json", views.source_jwks_view, name="source_jwks"),
    path("bulk/sources/<uuid:source_id>/pull", views.source_pull_view, name="source_pull"),
    path("bulk/upload", views.upload_view, name="upload"),
    path("bulk/sources/<uuid:source_id>/cancel", views.source_cancel_view, name="source_cancel"),
]
