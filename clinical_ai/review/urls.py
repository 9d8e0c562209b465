from django.urls import path

from clinical_ai.review import views

app_name = "review"

urlpatterns = [
    path("", views.review_queue_page, name="queue"),
    path("suggestions/<uuid:external_id>/", views.suggestion_page, name="suggestion"),
    path("suggestions/<uuid:external_id>/sign/", views.suggestion_sign_off_view, name="sign_off"),
    path("signature/callback/", views.signature_callback, name="signature_callback"),
]
