"""The hospital's identity provider as the settings describe it (CLINICAL_AI_OIDC_*)."""

from __future__ import annotations

from django.conf import settings

from clinical_ai.accounts.sso.client import OidcProvider
from clinical_ai.core.http import url_host

STAFF_PROVIDER_KEY = "staff"


def staff_provider() -> OidcProvider | None:
    """The staff sign-in provider, or None while single sign-on is not configured (no issuer or client)."""
    issuer = str(getattr(settings, "OIDC_ISSUER", "") or "")
    client_id = str(getattr(settings, "OIDC_CLIENT_ID", "") or "")
    if not issuer or not client_id:
        return None
    extra = {str(host).lower() for host in getattr(settings, "OIDC_EXTRA_HOSTS", ())}
    return OidcProvider(
        key=STAFF_PROVIDER_KEY,
        issuer=issuer,
        client_id=client_id,
        client_secret=str(getattr(settings, "OIDC_CLIENT_SECRET", "") or ""),
        scope=str(settings.OIDC_SCOPE),
        allowed_hosts=frozenset({url_host(issuer), *extra}),
    )


def local_login_enabled() -> bool:
    """Whether a local password signs anyone in (break-glass accounts, the demo). Always on while single
    sign-on is not configured: switching it off then would lock everyone out."""
    return bool(getattr(settings, "LOCAL_LOGIN_ENABLED", True)) or staff_provider() is None
