"""How a clinician signs a decision: their password, or a step-up sign-in at the hospital's identity
provider."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clinical_ai.accounts.models import ExternalIdentity
from clinical_ai.accounts.sso.client import OidcProvider
from clinical_ai.accounts.sso.config import staff_provider


def step_up_provider(*, user: Any, session_sso: Mapping[str, Any] | None) -> OidcProvider | None:
    """The identity provider ``user`` signs with, or None when they type their password.

    A user signs with the provider when single sign-on is on and they have an identity at its issuer,
    and either they have no usable password (an account made by single sign-on) or this session was
    signed in through that provider (``session_sso``, the session's "sso" record). The provider is
    preferred: the hospital's login is where a person is disabled, and its sign-in may need more than a
    password. A person who also has a local password and signed in with it (a break-glass account, the
    provider unreachable) signs with that password.
    """
    provider = staff_provider()
    if (
        provider is None
        or not ExternalIdentity.objects.filter(user_id=user.pk, issuer=provider.issuer).exists()
    ):
        return None
    signed_in_there = isinstance(session_sso, Mapping) and (
        str(session_sso.get("issuer") or "").rstrip("/") == provider.issuer.rstrip("/")
    )
    if not user.has_usable_password() or signed_in_there:
        return provider
    return None
