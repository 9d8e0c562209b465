"""``smart_protected``: bearer-token authentication for views that EHR clients call."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast, overload

from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from integrations.smart.principal import SmartPrincipal
from integrations.smart.services import access_token_authenticate

RefusedHook = Callable[[HttpRequest], None]
_View = TypeVar("_View", bound=Callable[..., HttpResponseBase])

WWW_AUTHENTICATE = 'Bearer realm="clinical-ai", error="invalid_token"'


def unauthorized_response() -> HttpResponse:
    """A bare 401: it says nothing about why (missing, unknown, expired, revoked or disabled)."""
    response = HttpResponse(status=401)
    response["WWW-Authenticate"] = WWW_AUTHENTICATE
    response["Cache-Control"] = "no-store"
    return response


@overload
def smart_protected(view: _View, /) -> _View: ...
@overload
def smart_protected(*, on_refused: RefusedHook | None = None) -> Callable[[_View], _View]: ...
def smart_protected(
    view: _View | None = None, /, *, on_refused: RefusedHook | None = None
) -> _View | Callable[[_View], _View]:
    """Require a valid SMART access token. Use as ``@smart_protected`` or
    ``@smart_protected(on_refused=hook)``; ``hook(request)`` runs before a refusal is answered (to audit
    it). The view finds the caller in ``request.smart_principal`` (or ``smart_principal_of(request)``) and
    checks scopes itself with ``principal.can(resource_type, action)``.

    The wrapped view is exempt from CSRF checks: it authenticates by bearer token only, never by cookie,
    so there is no ambient credential for a cross-site request to ride on.
    """

    def decorate(view_func: _View) -> _View:
        @functools.wraps(view_func)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            principal = access_token_authenticate(authorization_header=request.headers.get("Authorization"))
            if principal is None:
                if on_refused is not None:
                    on_refused(request)
                return unauthorized_response()
            request.smart_principal = principal  # type: ignore[attr-defined]
            return view_func(request, *args, **kwargs)

        wrapper.csrf_exempt = True  # type: ignore[attr-defined]
        return cast(_View, wrapper)

    if view is not None:
        return decorate(view)
    return decorate


def smart_principal_of(request: HttpRequest) -> SmartPrincipal:
    """The principal ``smart_protected`` attached; a programming error if the view is not protected."""
    principal = getattr(request, "smart_principal", None)
    if not isinstance(principal, SmartPrincipal):
        raise RuntimeError("this view is not wrapped in smart_protected")
    return principal
