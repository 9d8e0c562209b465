"""Sign in and sign out. Thin: parse the form, call one service, answer. The admin site uses these too."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import REDIRECT_FIELD_NAME
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from clinical_ai.accounts.forms import LoginForm
from clinical_ai.accounts.selectors import user_can_audit
from clinical_ai.accounts.services import user_log_in, user_log_out
from clinical_ai.core.middleware import request_id_of


def _safe_next(request: HttpRequest) -> str:
    target = request.POST.get(REDIRECT_FIELD_NAME) or request.GET.get(REDIRECT_FIELD_NAME) or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return ""


@sensitive_post_parameters("password")
@csrf_protect
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def login_view(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
    """``/accounts/login/`` and the admin site's login. A signed-in user is shown the form as well (with who
    they are), never redirected onwards: a page they may not see sends them here, and redirecting back
    would loop."""
    next_url = _safe_next(request)
    form = LoginForm(request.POST or None)
    failed = False
    if request.method == "POST" and form.is_valid():
        user = user_log_in(
            request=request,
            username=form.cleaned_data["username"],
            password=form.cleaned_data["password"],
            request_id=request_id_of(request),
        )
        if user is not None:
            # Without a page to go back to, this page again: it shows who is signed in and where they may go.
            return HttpResponseRedirect(next_url or reverse("accounts:login"))
        failed = True
    return render(
        request,
        "accounts/login.html",
        {
            "form": form,
            "failed": failed,
            "next": next_url,
            "can_audit": user_can_audit(request.user),
            "admin_url": reverse("admin:index") if request.user.is_staff else "",
        },
    )


@csrf_protect
@never_cache
@require_POST
def logout_view(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
    """``/accounts/logout/`` (POST only, so a link or an image cannot sign anyone out) and the admin's."""
    user_log_out(request=request, request_id=request_id_of(request))
    return HttpResponseRedirect(reverse("accounts:login"))
