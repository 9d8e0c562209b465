from django.urls import path

from integrations.smart import views

app_name = "smart"

urlpatterns = [
    path("auth/token", views.token, name="token"),
    path("fhir/.well-known/smart-configuration", views.smart_configuration, name="smart-configuration"),
    path(".well-known/smart-configuration", views.smart_configuration, name="smart-configuration-root"),
]
