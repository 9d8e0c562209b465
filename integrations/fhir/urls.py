from django.urls import path, re_path

from integrations.fhir import views

app_name = "fhir"

urlpatterns = [
    path("fhir/metadata", views.metadata, name="metadata"),
    re_path(r"^fhir/?$", views.system_endpoint, name="system"),
    re_path(r"^fhir/(?P<resource_type>[A-Za-z]{1,64})/?$", views.type_endpoint, name="type"),
    # Last of all: any other path under the FHIR base (e.g. GET or PUT Patient/123) is a FHIR 404.
    re_path(r"^fhir/(?P<path>[\s\S]*)$", views.unknown_path, name="unknown"),
]
