"""Sign in (with the TOTP second factor when the user has one), sign out, and enrol or remove the second
factor. Thin: parse the form, call one service, answer. The admin site uses the first two too."""

from __future__ import annotations

from base64 import b32encode
from binascii import unhexlify
from typing import Any
from urllib.parse import urlencode

import qrcode
import qrcode.image.svg
from django.conf import settings
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from clinical_ai.accounts.forms import LoginForm, OtpRemoveForm, OtpTokenForm
from clinical_ai.accounts.selectors import (
    otp_pending_user,
    user_can_audit,
    user_has_second_factor,
    user_otp_required,
    user_second_factor_ok,
    user_totp_devices,
    user_workplaces,
)
from clinical_ai.accounts.services import (
    LoginStep,
    SecondFactorOutcome,
    session_second_factor_verify,
    totp_device_enrol,
    totp_device_remove,
    totp_device_unsaved,
    totp_enrolment_key,
    user_log_in,
    user_log_out,
    user_second_factor_log_in,
)
from clinical_ai.accounts.sessions import signed_out_notice_pop
from clinical_ai.accounts.sso.config import local_login_enabled, staff_provider
from clinical_ai.accounts.sso.services import (
    local_login_refused_record,
    sso_logout_url,
    sso_signed_out_notice_pop,
)
from clinical_ai.core.middleware import request_id_of


def safe_next(request: HttpRequest) -> str:
    target = request.POST.get(REDIRECT_FIELD_NAME) or request.GET.get(REDIRECT_FIELD_NAME) or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return ""


def with_next(url: str, next_url: str) -> str:
    return f"{url}?{urlencode({REDIRECT_FIELD_NAME: next_url})}" if next_url else url


def _workplaces(user: Any) -> list[tuple[str, str]]:
    return [(place.label, reverse(place.url_name)) for place in user_workplaces(user)]


def landing_url(user: Any) -> str:
    """Where someone signed in without a page to go back to lands: their first role's work (the home page,
    which lists what they may use, when they have no role)."""
    places = _workplaces(user)
    return places[0][1] if places else reverse("home")


@sensitive_post_parameters("password")
@csrf_protect
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def login_view(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
    """``/accounts/login/`` and the admin site's login. Signed in, a person goes back to ``next`` or lands on
    their role's work. A signed-in user who comes here (a shift change, or a page they may not see sent
    them) is offered to continue as themselves or to sign in as someone else (which signs them out first),
    never redirected onwards: redirecting back would loop. A user with a TOTP device goes on to
    ``accounts:otp_verify``; one whose role requires a second factor and who has none, to ``accounts:otp``
    to enrol.

    With single sign-on set up, its button comes first; the password form is for break-glass accounts, and
    while local passwords are switched off (``LOCAL_LOGIN_ENABLED``) it is not shown and a password sent
    anyway is refused (403, on record) without being checked."""
    next_url = safe_next(request)
    local_login = local_login_enabled()
    if request.method == "POST" and not local_login:
        local_login_refused_record(request_id=request_id_of(request))
        return HttpResponseForbidden(
            "Signing in with a password is switched off here. Use the hospital login.",
            content_type="text/plain; charset=utf-8",
        )
    form = LoginForm(request.POST or None)
    failed = locked = False
    if request.method == "POST" and form.is_valid():
        step = user_log_in(
            request=request,
            username=form.cleaned_data["username"],
            password=form.cleaned_data["password"],
            request_id=request_id_of(request),
        )
        if step is LoginStep.SECOND_FACTOR:
            return HttpResponseRedirect(with_next(reverse("accounts:otp_verify"), next_url))
        if step is LoginStep.SIGNED_IN:
            if user_otp_required(request.user):
                return HttpResponseRedirect(with_next(reverse("accounts:otp"), next_url))
            return HttpResponseRedirect(next_url or landing_url(request.user))
        locked = step is LoginStep.LOCKED
        failed = not locked
    return render(
        request,
        "accounts/login.html",
        {
            "form": form,
            "failed": failed,
            "locked": locked,
            "lockout_minutes": max(1, settings.LOGIN_LOCKOUT_SECONDS // 60),
            "next": next_url,
            "can_audit": user_can_audit(request.user),
            "admin_url": reverse("admin:index") if request.user.is_staff else "",
            "workplaces": _workplaces(request.user),
            "continue_url": landing_url(request.user) if request.user.is_authenticated else "",
            # Why the last session here ended, when it timed out or the hospital login withdrew it (once).
            "signed_out_notice": signed_out_notice_pop(request.session)
            or sso_signed_out_notice_pop(request.session),
            "sso_url": with_next(reverse("accounts:sso_login"), next_url) if staff_provider() else "",
            "sso_label": settings.OIDC_PROVIDER_LABEL,
            "local_login": local_login,
        },
        # 429 Too Many Requests while locked out: the page says so, and scripts see it.
        status=429 if locked else 200,
    )


_VERIFY_ERRORS = {
    SecondFactorOutcome.WRONG_CODE: "That code is not right, or it has been used already. Wait for the next one.",
    SecondFactorOutcome.THROTTLED: "Too many wrong codes in a row: wait a few seconds before the next try.",
}


@sensitive_post_parameters("token")
@csrf_protect
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def otp_verify_view(request: HttpRequest) -> HttpResponse:
    """``/accounts/otp/verify/``: the code, either as the second step of signing in or, for a session that
    began before the user enrolled a device, to verify it (where views that require
    ``user_second_factor_ok`` send the user)."""
    next_url = safe_next(request)
    pending = otp_pending_user(request.session)
    user: Any = pending if pending is not None else request.user
    if pending is None and not (request.user.is_authenticated and not user_second_factor_ok(request.user)):
        if request.user.is_authenticated:  # nothing to verify
            return HttpResponseRedirect(next_url or landing_url(request.user))
        return HttpResponseRedirect(with_next(reverse("accounts:login"), next_url))
    form = OtpTokenForm(request.POST or None)
    error = ""
    if request.method == "POST" and form.is_valid():
        verify = user_second_factor_log_in if pending is not None else session_second_factor_verify
        outcome = verify(request=request, token=form.cleaned_data["token"], request_id=request_id_of(request))
        if outcome is SecondFactorOutcome.VERIFIED:
            return HttpResponseRedirect(next_url or landing_url(request.user))
        if outcome is SecondFactorOutcome.NOTHING_PENDING or (
            pending is not None and otp_pending_user(request.session) is None
        ):
            return render(request, "accounts/otp_verify.html", {"restart": True, "next": next_url})
        error = _VERIFY_ERRORS[outcome]
    return render(
        request,
        "accounts/otp_verify.html",
        {"form": form, "error": error, "next": next_url, "username": user.get_username()},
    )


def _qr_svg(data: str) -> SafeString:
    """The QR code of ``data`` as inline SVG: drawn here, so the secret never leaves for an image service."""
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2)
    svg = image.to_string(encoding="unicode")
    # Only qrcode's own markup of our own URL: nothing in it came from a request.
    return format_html('<div class="qr" role="img" aria-label="QR code">{}</div>', mark_safe(svg))  # noqa: S308


def _grouped(secret: str) -> str:
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


@sensitive_post_parameters("token", "password")
@csrf_protect
@never_cache
@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def otp_view(request: HttpRequest) -> HttpResponse:
    """``/accounts/otp/``: enrol a TOTP device (QR code and base32 secret, confirmed by a current code), or,
    with one enrolled, remove it with the password typed again."""
    user: Any = request.user
    next_url = safe_next(request)
    request_id = request_id_of(request)
    if user_has_second_factor(user):
        if not user_second_factor_ok(user):
            return HttpResponseRedirect(with_next(reverse("accounts:otp_verify"), reverse("accounts:otp")))
        remove_form = OtpRemoveForm(request.POST or None)
        failed = False
        if request.method == "POST" and remove_form.is_valid():
            if totp_device_remove(
                request=request, password=remove_form.cleaned_data["password"], request_id=request_id
            ):
                return HttpResponseRedirect(reverse("accounts:otp"))
            failed = True
        return render(
            request,
            "accounts/otp_manage.html",
            {"form": remove_form, "failed": failed, "devices": user_totp_devices(user)},
        )
    key = totp_enrolment_key(request=request)
    form = OtpTokenForm(request.POST or None)
    failed = False
    if request.method == "POST" and form.is_valid():
        device = totp_device_enrol(request=request, token=form.cleaned_data["token"], request_id=request_id)
        if device is not None:
            return HttpResponseRedirect(next_url or reverse("accounts:otp"))
        failed = True
    return render(
        request,
        "accounts/otp_enrol.html",
        {
            "form": form,
            "failed": failed,
            "next": next_url,
            "required": user_otp_required(user),
            "qr_svg": _qr_svg(totp_device_unsaved(user=user, key=key).config_url),
            "secret": _grouped(b32encode(unhexlify(key)).decode("ascii")),
        },
    )


@csrf_protect
@never_cache
@require_POST
def logout_view(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
    """``/accounts/logout/`` (POST only, so a link or an image cannot sign anyone out) and the admin's; back
    to the sign-in form, with the page it should then go to ("Sign in as someone else"). A single sign-on
    session goes on to the hospital login's own sign-out, where it offers one, which then sends the person
    back to the sign-in form (the page to go to after is not kept: the provider only returns to the address
    registered with it)."""
    provider_logout = sso_logout_url(request=request)
    user_log_out(request=request, request_id=request_id_of(request), idp_logout=bool(provider_logout))
    return HttpResponseRedirect(provider_logout or with_next(reverse("accounts:login"), safe_next(request)))
