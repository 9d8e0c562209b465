from django.urls import path, re_path

from integrations.cds_hooks import views

app_name = "cds_hooks"

urlpatterns = [
    path("cds-services", views.discovery_view, name="discovery"),
    path("cds-services/<slug:service_id>", views.service_view, name="service"),
    path("cds-services/<slug:service_id>/feedback", views.feedback_view, name="feedback"),
    re_path(r"^cds-services/(?P<path>[\s\S]*)$", views.unknown_path, name="unknown"),
]
