from django.urls import path

from integrations.smart import launch_views, views

app_name = "smart"

urlpatterns = [
    path("auth/token", views.token, name="token"),
    path("fhir/.well-known/smart-configuration", views.smart_configuration, name="smart-configuration"),
    path(".well-known/smart-configuration", views.smart_configuration, name="smart-configuration-root"),
    # SMART App Launch (EHR launch): clinical-ai opened from inside a patient's record in the EHR.
    path("launch", launch_views.launch, name="launch"),
    path("launch/callback", launch_views.launch_callback, name="launch-callback"),
]
