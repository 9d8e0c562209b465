from django.urls import path

from clinical_ai.accounts import views

app_name = "accounts"

urlpatterns = [
    path("login/", views.login_view, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("otp/", views.otp_view, name="otp"),
    path("otp/verify/", views.otp_verify_view, name="otp_verify"),
]
