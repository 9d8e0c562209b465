"""SMART Backend Services: registering EHR clients, issuing access tokens for signed client assertions
(client_credentials + private_key_jwt), and authenticating bearer tokens."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from clinical_ai.accounts.models import Organization
from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import Actor, audit_record
from integrations.smart.assertion import (
    CLIENT_ASSERTION_TYPE,
    UnknownKeyId,
    VerifiedAssertion,
    assertion_client_id,
    client_assertion_verify,
)
from integrations.smart.errors import OAuthError, OAuthErrorCode
from integrations.smart.jwk import JwkError, jwks_check_registrable, jwks_keys
from integrations.smart.jwks import (
    MAX_JWKS_BYTES,
    JwksUnavailable,
    JwksUrlError,
    ehr_client_jwks,
    jwks_url_check,
)
from integrations.smart.models import AccessToken, EhrClient, UsedAssertion
from integrations.smart.principal import SmartPrincipal
from integrations.smart.scopes import ScopeError, ScopeSet, parse_scopes, scopes_grant

CLIENT_REGISTER_ACTION = "smart.client.register"
TOKEN_ISSUE_ACTION = "smart.token.issue"  # noqa: S105 - an audit action name, not a secret
CLIENT_CREDENTIALS = "client_credentials"

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# RFC 6750 b64token; ours are token_urlsafe(32) (43 characters), anything far longer is not ours.
_BEARER = re.compile(r"^Bearer +([A-Za-z0-9\-._~+/]{16,512}=*) *$", re.IGNORECASE)


class EhrClientRegistrationError(ValueError):
    """The registration request is invalid (scopes, keys, client id); nothing was stored."""


@dataclass(frozen=True)
class IssuedToken:
    access_token: str = field(repr=False)
    expires_in: int
    scope: str
    client_id: str
    token_type: str = "bearer"  # noqa: S105 - the RFC 6750 token type, not a secret

    def as_json(self) -> dict[str, str | int]:
        return {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
            "scope": self.scope,
        }


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- Registration ------------------------------------------------------------------------------------------


def ehr_client_register(
    *,
    name: str,
    organization: Organization,
    scopes: str,
    jwks: Mapping[str, Any] | None = None,
    jwks_url: str = "",
    client_id: str | None = None,
    actor: Actor,
) -> EhrClient:
    """Register an EHR client with its allowed scopes and exactly one key source: an inline JWK Set of
    public keys (at least one RSA or EC P-384 key, no private members) or an https JWKS URL."""
    name = name.strip()
    if not name or len(name) > 200:
        raise EhrClientRegistrationError("the name must be 1 to 200 characters")
    try:
        allowed = parse_scopes(scopes)
    except ScopeError as exc:
        raise EhrClientRegistrationError(str(exc)) from None
    if not allowed:
        raise EhrClientRegistrationError("at least one system scope is required")
    if (jwks is None) == (not jwks_url):
        raise EhrClientRegistrationError("give exactly one of an inline JWK Set and a JWKS URL")
    stored_jwks: dict[str, Any] | None = None
    if jwks is not None:
        try:
            jwks_check_registrable(jwks)
            # Through JSON and back: what is stored is exactly what a JSONField returns later.
            serialized = json.dumps(jwks)
            stored_jwks = json.loads(serialized)
        except (JwkError, TypeError, ValueError) as exc:
            raise EhrClientRegistrationError(f"JWK Set: {exc}") from None
        if len(serialized) > MAX_JWKS_BYTES:
            raise EhrClientRegistrationError(f"the JWK Set is larger than {MAX_JWKS_BYTES} bytes")
    else:
        if len(jwks_url) > 500:
            raise EhrClientRegistrationError("the JWKS URL is longer than 500 characters")
        try:
            jwks_url_check(jwks_url)
        except JwksUrlError as exc:
            raise EhrClientRegistrationError(str(exc)) from None
    if client_id is not None and not _CLIENT_ID.match(client_id):
        raise EhrClientRegistrationError("a client id is 1 to 128 of A-Z a-z 0-9 . _ : -")

    if client_id is not None and EhrClient.objects.filter(client_id=client_id).exists():
        raise EhrClientRegistrationError(f"client id {client_id!r} is taken")
    try:
        return _ehr_client_create(
            name=name,
            organization=organization,
            allowed=allowed,
            stored_jwks=stored_jwks,
            jwks_url=jwks_url,
            client_id=client_id,
            actor=actor,
        )
    except IntegrityError:
        # Lost a race for the same client id against a concurrent registration.
        raise EhrClientRegistrationError("the client id is taken") from None


def _ehr_client_create(
    *,
    name: str,
    organization: Organization,
    allowed: ScopeSet,
    stored_jwks: dict[str, Any] | None,
    jwks_url: str,
    client_id: str | None,
    actor: Actor,
) -> EhrClient:
    with transaction.atomic():
        client = EhrClient(
            name=name,
            organization=organization,
            allowed_scopes=str(allowed),
            jwks=stored_jwks,
            jwks_url=jwks_url if stored_jwks is None else "",
        )
        if client_id is not None:
            client.client_id = client_id
        client.save()
        key_ids = [str(jwk.get("kid", ""))[:64] for jwk in jwks_keys(stored_jwks)][:20] if stored_jwks else []
        audit_record(
            actor=actor,
            action=CLIENT_REGISTER_ACTION,
            object_type="smart.ehr_client",
            object_id=str(client.external_id),
            organization=organization.slug,
            detail={
                "client_id": client.client_id,
                "scopes": allowed.texts(),
                "key_source": "inline" if stored_jwks is not None else "url",
                "key_ids": key_ids,
                "jwks_host": (urlsplit(jwks_url).hostname or "") if jwks_url else None,
            },
        )
    return client


# --- Token endpoint ----------------------------------------------------------------------------------------


@dataclass
class _Attempt:
    """What is known about a token request so far, for the audit row of a refusal."""

    claimed_client_id: str | None = None
    client: EhrClient | None = None
    authenticated: bool = False
    requested: ScopeSet | None = None


def used_assertions_purge(*, now: datetime | None = None) -> int:
    """Forget assertion jtis that can no longer be accepted anyway; returns how many were deleted."""
    deleted, _ = UsedAssertion.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted


def _required(form: Mapping[str, str], name: str) -> str:
    value = form.get(name, "")
    if not value:
        raise OAuthError(OAuthErrorCode.INVALID_REQUEST, f"{name} is required")
    return value


def _authenticate_client(
    *, assertion: str, form_client_id: str, token_endpoint_url: str, now: datetime, attempt: _Attempt
) -> tuple[EhrClient, VerifiedAssertion]:
    claimed = assertion_client_id(assertion)
    attempt.claimed_client_id = claimed
    if form_client_id and form_client_id != claimed:
        # RFC 7521 4.2: an optional client_id parameter must name the client the assertion is from.
        raise OAuthError(OAuthErrorCode.INVALID_CLIENT, "client_id does not match the assertion's iss")
    client = EhrClient.objects.select_related("organization").filter(client_id=claimed).first()
    if client is None:
        raise OAuthError(OAuthErrorCode.INVALID_CLIENT, "unknown client")
    attempt.client = client
    if not client.is_active:
        raise OAuthError(OAuthErrorCode.INVALID_CLIENT, "this client is disabled")

    def verify(refresh: bool) -> VerifiedAssertion:
        try:
            jwks = ehr_client_jwks(client, refresh=refresh)
        except JwksUnavailable as exc:
            raise OAuthError(
                OAuthErrorCode.INVALID_CLIENT, f"the client's keys are unavailable: {exc}"
            ) from None
        return client_assertion_verify(
            assertion=assertion,
            jwks=jwks,
            client_id=client.client_id,
            audience=token_endpoint_url,
            now=now,
            max_lifetime_seconds=settings.SMART_ASSERTION_MAX_LIFETIME_SECONDS,
            clock_skew_seconds=settings.SMART_CLOCK_SKEW_SECONDS,
        )

    try:
        verified = verify(refresh=False)
    except UnknownKeyId:
        if client.jwks is not None:
            raise
        verified = verify(refresh=True)  # the client may have rotated its published keys
    attempt.authenticated = True
    return client, verified


def _issue(
    *, form: Mapping[str, str], token_endpoint_url: str, request_id: str, attempt: _Attempt
) -> IssuedToken:
    grant_type = _required(form, "grant_type")
    if grant_type != CLIENT_CREDENTIALS:
        raise OAuthError(OAuthErrorCode.UNSUPPORTED_GRANT_TYPE, "only client_credentials is supported")
    if "client_secret" in form:
        raise OAuthError(
            OAuthErrorCode.INVALID_REQUEST, "client secrets are not accepted; use private_key_jwt"
        )
    if _required(form, "client_assertion_type") != CLIENT_ASSERTION_TYPE:
        raise OAuthError(
            OAuthErrorCode.INVALID_REQUEST, f"client_assertion_type must be {CLIENT_ASSERTION_TYPE}"
        )
    assertion = _required(form, "client_assertion")
    scope_text = _required(form, "scope")

    now = timezone.now()
    client, verified = _authenticate_client(
        assertion=assertion,
        form_client_id=form.get("client_id", ""),
        token_endpoint_url=token_endpoint_url,
        now=now,
        attempt=attempt,
    )

    try:
        allowed = parse_scopes(client.allowed_scopes)
    except ScopeError:
        allowed = ScopeSet()
    if not allowed:
        raise OAuthError(OAuthErrorCode.UNAUTHORIZED_CLIENT, "this client has no usable scopes registered")
    try:
        requested = parse_scopes(scope_text)
    except ScopeError as exc:
        raise OAuthError(OAuthErrorCode.INVALID_SCOPE, str(exc)) from None
    attempt.requested = requested
    granted = scopes_grant(requested=requested, allowed=allowed)
    if not granted:
        raise OAuthError(
            OAuthErrorCode.INVALID_SCOPE, "none of the requested scopes is allowed for this client"
        )

    lifetime = settings.SMART_ACCESS_TOKEN_LIFETIME_SECONDS
    used_assertions_purge(now=now)  # own statement, outside the transaction below: keeps that one short
    with transaction.atomic():
        try:
            # A savepoint: on PostgreSQL a failed INSERT would otherwise poison the whole transaction.
            with transaction.atomic():
                UsedAssertion.objects.create(
                    client=client,
                    jti=verified.jti,
                    expires_at=datetime.fromtimestamp(verified.expires_at, tz=now.tzinfo)
                    + timedelta(seconds=settings.SMART_CLOCK_SKEW_SECONDS),
                )
        except IntegrityError:
            raise OAuthError(
                OAuthErrorCode.INVALID_CLIENT, "this client assertion was used already (jti)"
            ) from None
        access_token = secrets.token_urlsafe(32)
        token_row = AccessToken.objects.create(
            token_sha256=_sha256(access_token),
            client=client,
            scopes=str(granted),
            issued_at=now,
            expires_at=now + timedelta(seconds=lifetime),
        )
        audit_record(
            actor=Actor.ehr_client(client.client_id),
            action=TOKEN_ISSUE_ACTION,
            outcome=Outcome.SUCCESS,
            object_type="smart.access_token",
            object_id=str(token_row.external_id),
            organization=client.organization.slug,
            request_id=request_id,
            detail={
                "client_id": client.client_id,
                "scopes": granted.texts(),
                "requested_scopes": requested.texts(),
                "expires_in": lifetime,
                "alg": verified.algorithm,
                "kid": (verified.key_id or "")[:64],
            },
        )
    return IssuedToken(
        access_token=access_token, expires_in=lifetime, scope=str(granted), client_id=client.client_id
    )


def access_token_refuse(*, error: OAuthError, request_id: str) -> None:
    """Audit a token request refused before it reached ``access_token_issue`` (by the view: wrong content
    type, repeated parameters), so that every refusal leaves a row."""
    _refusal_audit(error=error, request_id=request_id, attempt=_Attempt())


def access_token_issue(*, form: Mapping[str, str], token_endpoint_url: str, request_id: str) -> IssuedToken:
    """The token endpoint: client_credentials grant, authenticated by a signed client assertion.

    On success the assertion's jti, the token's hash and the audit row are written in one transaction.
    Every refusal raises ``OAuthError`` (``http_status`` 400, or 401 for ``invalid_client``) after an
    audit row of its own. Neither the assertion nor the token is ever written anywhere.
    """
    attempt = _Attempt()
    try:
        return _issue(
            form=form, token_endpoint_url=token_endpoint_url, request_id=request_id, attempt=attempt
        )
    except OAuthError as error:
        _refusal_audit(error=error, request_id=request_id, attempt=attempt)
        raise


def _refusal_audit(*, error: OAuthError, request_id: str, attempt: _Attempt) -> None:
    """The refusal's own audit row (its own transaction: the refusal is recorded, nothing else is). The
    actor is the client only once its assertion verified; a client id merely claimed by an unauthenticated
    caller goes into the detail, not into the actor."""
    client = attempt.client
    detail: dict[str, Any] = {
        "error": str(error.code),
        "error_description": error.description,
        "client_id": attempt.claimed_client_id,
        "client_known": client is not None,
        "client_authenticated": attempt.authenticated,
    }
    if attempt.requested is not None:
        detail["requested_scopes"] = attempt.requested.texts()
    audit_record(
        actor=Actor.ehr_client(client.client_id) if client and attempt.authenticated else Actor.anonymous(),
        action=TOKEN_ISSUE_ACTION,
        outcome=Outcome.FAILURE,
        object_type="smart.ehr_client" if client else "",
        object_id=str(client.external_id) if client else "",
        organization=client.organization.slug if client else "",
        request_id=request_id,
        detail=detail,
    )


# --- Bearer authentication ---------------------------------------------------------------------------------


def access_token_authenticate(*, authorization_header: str | None) -> SmartPrincipal | None:
    """The client behind an ``Authorization: Bearer`` header, or None when the header is missing or the
    token unknown, expired, revoked, or its client disabled. Never says which: callers answer 401."""
    if not authorization_header:
        return None
    match = _BEARER.match(authorization_header)
    if match is None:
        return None
    token = (
        AccessToken.objects.select_related("client__organization")
        .filter(token_sha256=_sha256(match.group(1)))
        .first()
    )
    if token is None or token.revoked_at is not None or token.expires_at <= timezone.now():
        return None
    client = token.client
    if not client.is_active:
        return None
    try:
        scopes = parse_scopes(token.scopes)
    except ScopeError:
        return None
    return SmartPrincipal(
        client_id=client.client_id,
        client_pk=client.pk,
        organization_id=client.organization_id,
        organization_slug=client.organization.slug,
        scopes=scopes,
    )
