"""Staff sign-in through the hospital's identity provider, and the re-check of a signed-in person's groups.

``sso_log_in`` turns a verified answer of the provider (``client.authorization_complete``) into a Django
session. The account is found by its ``ExternalIdentity`` (issuer and ``sub``) alone, never by a username or
an e-mail address: the provider lets people change those, and matching on them would hand a local account
(a break-glass admin, say) to whoever the provider names alike. An unknown subject gets a new account, with
no usable password, but only when the groups claim gives it a role here (``GroupRole`` rows); otherwise
nothing is created and the person is told they have no role here.

Roles follow the groups claim at every sign-in and every ``OIDC_RECHECK_SECONDS`` of a session
(``sso_session_recheck``, run by ``middleware.SsoRecheckMiddleware``): memberships the groups gave
(``Membership.Source.IDENTITY_PROVIDER``) are added and taken away to match; memberships granted here are
never touched.

Our TOTP second factor is not asked of a single sign-on session: the hospital's provider does its own
multi-factor sign-in, and asking for a second code from a second app would only teach staff to share
devices. ``selectors.user_second_factor_ok`` accepts a request that the middleware marked as signed in by
the provider.

The provider's tokens are kept for the re-check (refresh or access token) and for signing out at the
provider (the id_token, as a hint): sealed with the key ring in the session (``SSO_TOKENS_SESSION_KEY``),
bound to the person and the provider. They are never logged or audited.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model, login, logout
from django.contrib.sessions.backends.base import SessionBase
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from clinical_ai.accounts import sessions
from clinical_ai.accounts.models import ExternalIdentity, GroupRole, Membership
from clinical_ai.accounts.sso.client import (
    CompletedAuthorization,
    OidcProvider,
    SsoRefused,
    end_session_url,
    tokens_refresh,
    userinfo_fetch,
)
from clinical_ai.accounts.sso.config import STAFF_PROVIDER_KEY, staff_provider
from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.core.crypto import DecryptionError, SealedValue
from clinical_ai.core.sealing import open_json, seal_json

# {"provider", "issuer", "subject", "username", "method": "oidc", "auth_time", "recheck_at", "failing_since"}
SSO_SESSION_KEY = "sso"
SSO_TOKENS_SESSION_KEY = "sso_tokens"
# Why the last single sign-on session of this browser was ended by a re-check, for the sign-in page.
SSO_SIGNED_OUT_KEY = "sso_signed_out"
# The session is authenticated by Django's model backend (the account exists and is active); how the person
# proved who they are is in ``SSO_SESSION_KEY`` and in the audit row (backend "oidc").
SESSION_BACKEND = "django.contrib.auth.backends.ModelBackend"
# While the provider cannot be reached, a session is kept for this many re-check intervals, tried again
# every RECHECK_RETRY_SECONDS at most; past it the session ends (a person removed from their groups during
# an outage must not keep access for the rest of their shift).
RECHECK_GRACE_INTERVALS = 2
RECHECK_RETRY_SECONDS = 60
# Reasons a provider's answer is "not now" rather than "no".
TRANSIENT_REASONS = frozenset({"unreachable", "metadata"})

_USERNAME_FORBIDDEN = re.compile(r"[^\w.@+-]")
_USERNAME_MAX = 150


@dataclass(frozen=True)
class SsoLogInResult:
    """A signed-in ``user``, or ``refused``: a reason code (``no-role``, ``disabled``) already audited."""

    user: Any | None
    refused: str = ""


@dataclass(frozen=True)
class RecheckResult:
    """What a re-check did: ``due`` False when it was not time yet; ``ended`` a reason code when the
    session was ended (``no-role``, ``refused``, ``unreachable``, ``sso-off``)."""

    due: bool
    ended: str = ""
    added: int = 0
    removed: int = 0


def _groups(claims: Mapping[str, Any]) -> list[str]:
    """The groups claim as a list of names (a provider that sends one group may send a plain string)."""
    value = claims.get(str(settings.OIDC_GROUPS_CLAIM))
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [str(item) for item in value if isinstance(item, str | int)]
    return []


def _roles_for_groups(groups: Iterable[str]) -> set[tuple[int, str]]:
    """(organization id, role) pairs that ``groups`` give through the GroupRole mapping."""
    names = list(groups)
    if not names:
        return set()
    return {
        (int(organization_id), str(role))
        for organization_id, role in GroupRole.objects.filter(group__in=names).values_list(
            "organization_id", "role"
        )
    }


def _memberships_sync(*, user: Any, wanted: set[tuple[int, str]]) -> tuple[int, int]:
    """Make ``user``'s provider-given memberships exactly ``wanted`` (granted ones untouched, and a role
    already granted is not given twice). Returns (added, removed)."""
    current = list(Membership.objects.select_for_update().filter(user=user))
    have = {(m.organization_id, m.role): m for m in current}
    stale = [
        m.pk
        for key, m in have.items()
        if m.source == Membership.Source.IDENTITY_PROVIDER and key not in wanted
    ]
    if stale:
        Membership.objects.filter(pk__in=stale).delete()
    missing = sorted(wanted - have.keys())
    Membership.objects.bulk_create(
        [
            Membership(
                user=user,
                organization_id=organization_id,
                role=role,
                source=Membership.Source.IDENTITY_PROVIDER,
            )
            for organization_id, role in missing
        ]
    )
    return len(missing), len(stale)


def _has_role(user: Any) -> bool:
    return bool(user.is_superuser) or Membership.objects.filter(user=user).exists()


def _username_free(claims: Mapping[str, Any]) -> str:
    """A username for a new account from the configured claim (the subject when absent), with what Django
    does not allow in usernames replaced, and a number added when someone else has it already."""
    wanted = str(claims.get(str(settings.OIDC_USERNAME_CLAIM)) or claims.get("sub") or "").strip()
    base = _USERNAME_FORBIDDEN.sub("_", wanted)[: _USERNAME_MAX - 8] or "staff"
    user_model = get_user_model()
    name, number = base, 1
    while user_model.objects.filter(**{user_model.USERNAME_FIELD: name}).exists():
        number += 1
        name = f"{base}-{number}"
    return name


def _claim_text(claims: Mapping[str, Any], name: str, limit: int) -> str:
    value = claims.get(name)
    return str(value).strip()[:limit] if isinstance(value, str) else ""


def _account_create(*, provider: OidcProvider, claims: Mapping[str, Any]) -> Any:
    user_model = get_user_model()
    user = user_model(
        **{user_model.USERNAME_FIELD: _username_free(claims)},
        first_name=_claim_text(claims, "given_name", 150),
        last_name=_claim_text(claims, "family_name", 150),
        email=_claim_text(claims, "email", 254),
    )
    # No password here: this person signs in at their provider. (Step-up signing asks the provider again.)
    user.set_unusable_password()
    user.save()
    ExternalIdentity.objects.create(user=user, issuer=provider.issuer, subject=str(claims["sub"]))
    return user


def _seal_tokens(token: Mapping[str, Any], *, provider: OidcProvider, user_id: str) -> list[str]:
    kept = {
        name: str(token[name])
        for name in ("id_token", "access_token", "refresh_token")
        if isinstance(token.get(name), str) and token[name]
    }
    sealed = seal_json(kept, associated_data=f"sso-tokens:{provider.key}:{user_id}")
    return [
        sealed.key_id,
        base64.b64encode(sealed.nonce).decode(),
        base64.b64encode(sealed.ciphertext).decode(),
    ]


def sso_tokens_open(session: SessionBase, *, user_id: str) -> dict[str, str]:
    """The provider's tokens kept in this session (id, access and refresh token, those there are); empty
    when there are none or they cannot be opened (a retired key, another person's session)."""
    sso = session.get(SSO_SESSION_KEY)
    kept = session.get(SSO_TOKENS_SESSION_KEY)
    if not isinstance(sso, dict) or not isinstance(kept, list):
        return {}
    try:
        key_id, nonce, ciphertext = kept
        tokens = open_json(
            SealedValue(str(key_id), base64.b64decode(nonce), base64.b64decode(ciphertext)),
            associated_data=f"sso-tokens:{sso.get('provider')}:{user_id}",
        )
    except (DecryptionError, TypeError, ValueError):
        return {}
    return {str(k): str(v) for k, v in tokens.items()} if isinstance(tokens, dict) else {}


def _refusal_record(
    *, reason: str, issuer: str, request_id: str, user: Any | None = None, **extra: Any
) -> None:
    audit_record(
        actor=Actor.anonymous(),
        action="auth.login_failed",
        outcome=Outcome.FAILURE,
        object_type="User" if user is not None else "",
        object_id=str(user.pk) if user is not None else "",
        request_id=request_id,
        detail={"backend": "oidc", "reason": reason, "issuer": issuer[:200], **extra},
    )


def sso_login_failed_record(*, provider: OidcProvider | None, refused: SsoRefused, request_id: str) -> None:
    """Put on record a sign-in through the provider that did not complete (``refused.reason``, the code;
    never the provider's answer itself). Nothing else changes."""
    with transaction.atomic():
        _refusal_record(
            reason=refused.reason, issuer=provider.issuer if provider else "", request_id=request_id
        )


def sso_log_in(
    *, request: HttpRequest, completed: CompletedAuthorization, provider: OidcProvider, request_id: str
) -> SsoLogInResult:
    """Sign in the person ``completed`` names (see the module's description), or refuse them on record.

    On success: the session is started and holds ``SSO_SESSION_KEY`` and the sealed tokens; ``auth.login``
    (backend "oidc", the issuer, whether the account was created, roles added and removed) is written in the
    same transaction as the account and memberships."""
    claims = completed.claims
    subject = str(claims.get("sub") or "")
    if not subject:
        raise SsoRefused("claims", "the id_token names no subject")
    wanted = _roles_for_groups(_groups(claims))
    now = sessions.clock()
    with transaction.atomic():
        identity = (
            ExternalIdentity.objects.select_for_update()
            .select_related("user")
            .filter(issuer=provider.issuer, subject=subject)
            .first()
        )
        created = identity is None
        if identity is None:
            if not wanted:
                _refusal_record(reason="no-role", issuer=provider.issuer, request_id=request_id)
                return SsoLogInResult(user=None, refused="no-role")
            user = _account_create(provider=provider, claims=claims)
            audit_record(
                actor=Actor.system("single-sign-on"),
                action="accounts.staff.create",
                object_type="User",
                object_id=str(user.pk),
                request_id=request_id,
                detail={"source": "oidc", "issuer": provider.issuer[:200]},
            )
        else:
            user = identity.user
            if not user.is_active:
                _refusal_record(reason="disabled", issuer=provider.issuer, request_id=request_id, user=user)
                return SsoLogInResult(user=None, refused="disabled")
        added, removed = _memberships_sync(user=user, wanted=wanted)
        if not _has_role(user):
            # The groups no longer give a role (those they gave are taken away above, which is right
            # whatever happens next): no session.
            _refusal_record(
                reason="no-role",
                issuer=provider.issuer,
                request_id=request_id,
                user=user,
                roles_removed=removed,
            )
            return SsoLogInResult(user=None, refused="no-role")
        auth_time = claims.get("auth_time") or claims.get("iat") or now
        sso_session_start(
            request=request,
            user=user,
            provider_key=provider.key,
            issuer=provider.issuer,
            subject=subject,
            method="oidc",
            auth_time=int(auth_time) if isinstance(auth_time, int | float) else now,
            request_id=request_id,
            # What the person typed at the provider, for its login_hint when they sign a decision.
            username=_claim_text(claims, str(settings.OIDC_USERNAME_CLAIM), 255),
            detail={"account_created": created, "roles_added": added, "roles_removed": removed},
        )
        request.session[SSO_TOKENS_SESSION_KEY] = _seal_tokens(
            completed.token, provider=provider, user_id=str(user.pk)
        )
    return SsoLogInResult(user=user)


def sso_session_start(
    *,
    request: HttpRequest,
    user: Any,
    provider_key: str,
    issuer: str,
    subject: str,
    method: str,
    auth_time: int,
    request_id: str,
    username: str = "",
    organization: str = "",
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Inside the caller's transaction: start the session of ``user``, signed in through ``issuer`` as
    ``subject`` (``method`` "oidc" for the hospital's provider, "smart" for an EHR launch), with its
    ``SSO_SESSION_KEY`` entry, the identity's last sign-in, and the ``auth.login`` row (backend = method)."""
    now = sessions.clock()
    login(request, user, backend=SESSION_BACKEND)
    sessions.session_started(request)
    entry: dict[str, Any] = {
        "provider": provider_key,
        "issuer": issuer,
        "subject": subject,
        "method": method,
        "auth_time": auth_time,
        "recheck_at": now + int(settings.OIDC_RECHECK_SECONDS),
        "failing_since": 0,
    }
    if username:
        entry["username"] = username
    request.session[SSO_SESSION_KEY] = entry
    ExternalIdentity.objects.filter(issuer=issuer, subject=subject).update(last_login_at=timezone.now())
    audit_record(
        actor=Actor.user(user.pk),
        action="auth.login",
        object_type="User",
        object_id=str(user.pk),
        organization=organization,
        request_id=request_id,
        detail={"backend": method, "issuer": issuer[:200], **(detail or {})},
    )


def sso_session(session: SessionBase) -> dict[str, Any] | None:
    """This session's single sign-on record (``SSO_SESSION_KEY``) when the staff provider signed it in."""
    sso = session.get(SSO_SESSION_KEY)
    if isinstance(sso, dict) and sso.get("method") == "oidc" and sso.get("provider") == STAFF_PROVIDER_KEY:
        return sso
    return None


def _session_end(*, request: HttpRequest, reason: str, request_id: str, **detail: Any) -> RecheckResult:
    user = request.user
    with transaction.atomic():
        audit_record(
            actor=Actor.user(user.pk or ""),
            action="auth.sso.recheck",
            outcome=Outcome.FAILURE,
            object_type="User",
            object_id=str(user.pk),
            request_id=request_id,
            detail={"ended": True, "reason": reason, **detail},
        )
        logout(request)
    request.session[SSO_SIGNED_OUT_KEY] = reason
    return RecheckResult(due=True, ended=reason)


def _current_claims(
    *, provider: OidcProvider, tokens: dict[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The person's claims as the provider sees them now, and the tokens to keep: a refresh (a new,
    verified id_token) where there is a refresh token, else the userinfo endpoint with the access token."""
    if tokens.get("refresh_token"):
        fresh = tokens_refresh(provider=provider, refresh_token=tokens["refresh_token"])
        kept = dict(tokens)
        for name in ("id_token", "access_token", "refresh_token"):
            if isinstance(fresh.get(name), str) and fresh[name]:
                kept[name] = fresh[name]
        claims = fresh.get("claims")
        if isinstance(claims, dict):
            return claims, kept
        return userinfo_fetch(provider=provider, access_token=kept.get("access_token", "")), kept
    if tokens.get("access_token"):
        return userinfo_fetch(provider=provider, access_token=tokens["access_token"]), tokens
    raise SsoRefused("token", "no token to ask the provider with")


def sso_session_recheck(*, request: HttpRequest, now: int, request_id: str = "") -> RecheckResult:
    """Once ``OIDC_RECHECK_SECONDS`` have passed since the last check of a single sign-on session, ask the
    provider again about the person and make their roles follow its groups claim.

    - Roles changed: ``auth.sso.recheck`` with the counts added and removed.
    - The provider refuses (the person was removed or their session revoked), names another subject, or
      no role is left: the session ends, on record (``auth.sso.recheck``, outcome failure, ``ended``), and
      the sign-in page says why (``sso_signed_out_notice_pop``).
    - The provider cannot be reached: the session is kept and tried again after ``RECHECK_RETRY_SECONDS``
      (or the interval, when shorter), until ``RECHECK_GRACE_INTERVALS`` intervals have passed since the
      first failure; then it ends with reason ``unreachable``.
    """
    sso = sso_session(request.session)
    user = request.user
    if sso is None or not user.is_authenticated:
        return RecheckResult(due=False)
    interval = int(settings.OIDC_RECHECK_SECONDS)
    if now < int(sso.get("recheck_at") or 0):
        return RecheckResult(due=False)
    provider = staff_provider()
    if provider is None or provider.issuer != sso.get("issuer"):
        return _session_end(request=request, reason="sso-off", request_id=request_id)
    tokens = sso_tokens_open(request.session, user_id=str(user.pk))
    try:
        claims, kept = _current_claims(provider=provider, tokens=tokens)
    except SsoRefused as refused:
        if refused.reason not in TRANSIENT_REASONS:
            return _session_end(request=request, reason="refused", request_id=request_id, code=refused.reason)
        failing_since = int(sso.get("failing_since") or 0) or now
        if now - failing_since >= RECHECK_GRACE_INTERVALS * interval:
            return _session_end(
                request=request, reason="unreachable", request_id=request_id, code=refused.reason
            )
        request.session[SSO_SESSION_KEY] = {
            **sso,
            "failing_since": failing_since,
            # Tried again soon, and at the latest when the grace ends, so that it ends on time.
            "recheck_at": min(
                now + max(1, min(RECHECK_RETRY_SECONDS, interval)),
                failing_since + RECHECK_GRACE_INTERVALS * interval,
            ),
        }
        return RecheckResult(due=True)
    if str(claims.get("sub") or "") != str(sso.get("subject")):
        return _session_end(request=request, reason="refused", request_id=request_id, code="subject")
    wanted = _roles_for_groups(_groups(claims))
    with transaction.atomic():
        added, removed = _memberships_sync(user=user, wanted=wanted)
        if not _has_role(user):
            return _session_end(
                request=request,
                reason="no-role",
                request_id=request_id,
                roles_added=added,
                roles_removed=removed,
            )
        if added or removed:
            audit_record(
                actor=Actor.user(user.pk),
                action="auth.sso.recheck",
                object_type="User",
                object_id=str(user.pk),
                request_id=request_id,
                detail={"roles_added": added, "roles_removed": removed},
            )
    request.session[SSO_SESSION_KEY] = {**sso, "failing_since": 0, "recheck_at": now + interval}
    if kept != tokens:
        request.session[SSO_TOKENS_SESSION_KEY] = _seal_tokens(kept, provider=provider, user_id=str(user.pk))
    return RecheckResult(due=True, added=added, removed=removed)


_SIGNED_OUT_NOTICES = {
    "no-role": "You were signed out: your hospital login no longer gives you access to this service. "
    "If you think this is wrong, ask your manager or the IT service desk.",
    "refused": "You were signed out: your hospital login session has ended. Sign in again to go on.",
    "unreachable": "You were signed out: the hospital login could not be reached to confirm your access. "
    "Sign in again to go on.",
    "sso-off": "You were signed out: signing in with the hospital login has changed. Sign in again to go on.",
}


def sso_signed_out_notice_pop(session: SessionBase) -> str:
    """The sentence for the sign-in page when a re-check ended this browser's last session ("" otherwise);
    shown once."""
    return _SIGNED_OUT_NOTICES.get(str(session.pop(SSO_SIGNED_OUT_KEY, "")), "")


def sso_logout_url(*, request: HttpRequest) -> str:
    """Where to send a person signing out of a single sign-on session so that the provider's session ends
    too (RP-initiated logout, with the id_token as the hint and the sign-in page to come back to), or ""
    when this is not such a session or the provider does not offer it. Read before the session ends."""
    sso = sso_session(request.session)
    provider = staff_provider()
    if sso is None or provider is None or not request.user.is_authenticated:
        return ""
    tokens = sso_tokens_open(request.session, user_id=str(request.user.pk))
    return end_session_url(
        provider=provider,
        id_token_hint=tokens.get("id_token", ""),
        post_logout_redirect_uri=request.build_absolute_uri(reverse("accounts:login")),
    )


def local_login_refused_record(*, request_id: str) -> None:
    """Put on record a password sign-in attempted while local passwords are switched off (nothing checked,
    nothing counted towards a lockout: the form is not offered)."""
    with transaction.atomic():
        audit_record(
            actor=Actor.anonymous(),
            action="auth.login_failed",
            outcome=Outcome.FAILURE,
            request_id=request_id,
            detail={"reason": "local-login-off"},
        )
