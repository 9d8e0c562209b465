from django.urls import path

from clinical_ai.accounts import views
from clinical_ai.accounts.sso import views as sso_views

app_name = "accounts"

urlpatterns = [
    path("login/", views.login_view, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("otp/", views.otp_view, name="otp"),
    path("otp/verify/", views.otp_verify_view, name="otp_verify"),
    path("sso/login/", sso_views.sso_login_view, name="sso_login"),
    path("sso/callback/", sso_views.sso_callback_view, name="sso_callback"),
]
