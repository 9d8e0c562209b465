"""The gateway as an OpenID Connect client (relying party): send a person to their identity provider, and
take them back with a verified id_token. One module for the hospital's staff sign-in, the EHR launch and
the step-up of an electronic signature.

Authlib does the protocol: the authorization URL with PKCE (S256), ``state`` and ``nonce``; the state kept
in the Django session and consumed on return (a replayed or unknown state is refused); the code exchanged
with its verifier; the id_token's signature checked against the provider's JWK Set and its claims (``iss``,
``aud``, ``exp``, ``iat``, ``nonce``, ``auth_time`` when ``max_age`` was asked). What this module adds is
the provider's configuration, the transport (clinical_ai.core.http via accounts.sso.transport), and
refusals with a reason code that callers audit. Tokens are returned to the caller and never logged, audited
or put in an exception's message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from authlib.integrations.base_client import MismatchingStateError, OAuthError
from authlib.integrations.django_client import DjangoIntegration, DjangoOAuth2App
from authlib.oidc.core import CodeIDToken
from django.http import HttpRequest, HttpResponseRedirect
from joserfc.errors import (
    BadSignatureError,
    DecodeError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)

from clinical_ai.accounts.sso.transport import gateway_session_class
from clinical_ai.core.http import HttpFailure, url_host

# How long a person may take at the provider's sign-in page before the answer is no longer taken.
AUTHORIZATION_MAX_SECONDS = 600
# Clock difference tolerated between this server and the provider, for exp, iat and auth_time.
CLOCK_LEEWAY_SECONDS = 60
# A discovery document and its keys are fetched again after this long (a provider may rotate its keys).
METADATA_MAX_AGE_SECONDS = 3600


@dataclass(frozen=True)
class OidcProvider:
    """One identity provider as this gateway is registered with it."""

    key: str  # "staff" for the hospital's provider, "smart-<pk>" for an EHR's SMART authorization server
    issuer: str  # the ``iss`` its id_tokens must carry
    client_id: str
    client_secret: str = field(repr=False, default="")  # "" for a public client (PKCE alone)
    scope: str = "openid"
    metadata_url: str = ""  # default: <issuer>/.well-known/openid-configuration
    allowed_hosts: frozenset[str] = frozenset()  # default: the issuer's host

    @property
    def discovery_url(self) -> str:
        return self.metadata_url or f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"

    @property
    def hosts(self) -> frozenset[str]:
        return self.allowed_hosts or frozenset({url_host(self.issuer)})


class SsoRefused(Exception):
    """The provider's answer does not sign anyone in; nothing changed. ``reason`` is a short code for the
    audit row and the page (``state``, ``nonce``, ``issuer``, ``audience``, ``expired``, ``signature``,
    ``claims``, ``auth-time``, ``token``, ``idp-error``, ``unreachable``, ``metadata``); the message never
    holds a token."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


@dataclass(frozen=True)
class CompletedAuthorization:
    """A person back from their provider, their id_token verified. ``token`` is the whole token answer
    (access, refresh and id tokens, and SMART's launch context such as ``patient`` and ``appContext``): a
    secret, never to be logged or audited."""

    purpose: str
    context: Mapping[str, str]
    claims: Mapping[str, Any]
    token: Mapping[str, Any] = field(repr=False)
    started_at: int  # when the person was sent to the provider (seconds since the epoch)


_apps: dict[OidcProvider, DjangoOAuth2App] = {}
_apps_lock = threading.Lock()


def _app(provider: OidcProvider) -> DjangoOAuth2App:
    """Authlib's client for ``provider``, kept per process so that the discovery document and the keys are
    fetched once an hour rather than at every sign-in."""
    with _apps_lock:
        app = _apps.get(provider)
        loaded_at = app.server_metadata.get("_loaded_at") if app is not None else None
        if app is None or (loaded_at is not None and time.time() - loaded_at > METADATA_MAX_AGE_SECONDS):
            app = DjangoOAuth2App(
                DjangoIntegration(f"sso-{provider.key}"),
                name=f"sso-{provider.key}",
                client_id=provider.client_id,
                client_secret=provider.client_secret or None,
                server_metadata_url=provider.discovery_url,
                client_kwargs={
                    "scope": provider.scope,
                    "code_challenge_method": "S256",
                    "token_endpoint_auth_method": (
                        "client_secret_basic" if provider.client_secret else "none"
                    ),
                },
            )
            app.client_cls = gateway_session_class(provider.hosts)
            _apps[provider] = app
        return app


def provider_metadata(provider: OidcProvider) -> dict[str, Any]:
    """The provider's discovery document (``SsoRefused("metadata")`` when it cannot be had or names
    another issuer than the one registered)."""
    app = _app(provider)
    try:
        metadata = dict(app.load_server_metadata())
    except (HttpFailure, requests.RequestException, ValueError) as exc:
        with _apps_lock:
            _apps.pop(provider, None)
        raise SsoRefused(
            "metadata", f"the provider's configuration cannot be read ({type(exc).__name__})"
        ) from None
    announced = metadata.get("issuer")
    if announced is not None and str(announced).rstrip("/") != provider.issuer.rstrip("/"):
        raise SsoRefused("metadata", "the provider's configuration names another issuer")
    for endpoint in ("authorization_endpoint", "token_endpoint"):
        if url_host(str(metadata.get(endpoint, ""))) not in provider.hosts:
            raise SsoRefused("metadata", f"the provider's {endpoint} is not on an allowed host")
    return metadata


def authorization_redirect(
    request: HttpRequest,
    *,
    provider: OidcProvider,
    redirect_uri: str,
    purpose: str,
    context: Mapping[str, str] | None = None,
    **params: str,
) -> HttpResponseRedirect:
    """Send the person to the provider's authorization endpoint (code flow, PKCE S256, a fresh state and
    nonce kept in this session with ``purpose`` and ``context`` for the return). ``params`` go on the URL
    as given: ``prompt="login"``, ``max_age="0"``, ``login_hint``, SMART's ``launch`` and ``aud``."""
    provider_metadata(provider)
    app = _app(provider)
    try:
        created = app.create_authorization_url(redirect_uri, **params)
    except (HttpFailure, requests.RequestException, RuntimeError) as exc:
        raise SsoRefused("metadata", f"no authorization endpoint ({type(exc).__name__})") from None
    app.save_authorize_data(
        request,
        redirect_uri=redirect_uri,
        purpose=purpose,
        context=dict(context or {}),
        started_at=int(time.time()),
        max_age=params.get("max_age", ""),
        **created,
    )
    return HttpResponseRedirect(created["url"])


def _state_take(request: HttpRequest, app: DjangoOAuth2App) -> tuple[str, dict[str, Any]]:
    """The state the provider sent back and what was kept for it, consumed: the same answer cannot be used
    twice."""
    source = request.GET if request.method == "GET" else request.POST
    state = source.get("state") or ""
    kept = app.framework.get_state_data(request.session, state) if state else None
    if state:
        app.framework.clear_state_data(request.session, state)
    if not isinstance(kept, dict):
        raise SsoRefused("state", "the answer's state is unknown here, or was used already")
    if time.time() - int(kept.get("started_at", 0)) > AUTHORIZATION_MAX_SECONDS:
        raise SsoRefused("state", "the sign-in took too long")
    return state, kept


def _claim_refusal(exc: JoseError) -> SsoRefused:
    if isinstance(exc, ExpiredTokenError):
        return SsoRefused("expired", "the id_token has expired")
    if isinstance(exc, InvalidClaimError | MissingClaimError):
        claim = str(getattr(exc, "claim", "") or "")
        reason = {"iss": "issuer", "aud": "audience", "nonce": "nonce", "auth_time": "auth-time"}.get(
            claim, "claims"
        )
        return SsoRefused(reason, f"the id_token's {claim or 'claims'} claim is not right")
    if isinstance(exc, BadSignatureError | DecodeError | InvalidKeyIdError):
        return SsoRefused("signature", "the id_token's signature does not verify")
    return SsoRefused("claims", f"the id_token is not acceptable ({type(exc).__name__})")


def id_token_verify(
    *, provider: OidcProvider, token: Mapping[str, Any], nonce: str | None, max_age: str = ""
) -> dict[str, Any]:
    """The verified claims of ``token["id_token"]``: signature by one of the provider's keys, ``iss`` the
    registered issuer, ``aud`` this client, not expired, ``nonce`` the one sent (when one was), and
    ``auth_time`` present when ``max_age`` was asked."""
    if not token.get("id_token"):
        raise SsoRefused("claims", "the provider sent no id_token")
    app = _app(provider)
    options: dict[str, Any] = {
        "iss": {"essential": True, "value": provider.issuer},
        "aud": {"essential": True, "value": provider.client_id},
        "sub": {"essential": True},
    }
    if max_age != "":
        options["auth_time"] = {"essential": True}
    if nonce is not None:
        options["nonce"] = {"essential": True, "value": nonce}
    try:
        claims = app.parse_id_token(
            dict(token),
            nonce=nonce,
            claims_options=options,
            claims_cls=CodeIDToken if "access_token" in token else None,
            leeway=CLOCK_LEEWAY_SECONDS,
        )
    except JoseError as exc:
        raise _claim_refusal(exc) from None
    except (HttpFailure, requests.RequestException) as exc:
        raise SsoRefused(
            "unreachable", f"the provider's keys cannot be read ({type(exc).__name__})"
        ) from None
    except (ValueError, RuntimeError) as exc:
        raise SsoRefused("signature", f"the id_token cannot be read ({type(exc).__name__})") from None
    return dict(claims or {})


def authorization_complete(
    request: HttpRequest, *, provider: OidcProvider, redirect_uri: str
) -> CompletedAuthorization:
    """Take the provider's answer at ``redirect_uri``: the state (known, unused, recent), an error the
    provider reports (``SsoRefused("idp-error")``), the code exchanged with the PKCE verifier, and the
    id_token verified (see ``id_token_verify``)."""
    app = _app(provider)
    _state, kept = _state_take(request, app)
    source = request.GET if request.method == "GET" else request.POST
    if source.get("error"):
        raise SsoRefused("idp-error", f"the provider refused: {str(source.get('error'))[:64]}")
    code = source.get("code") or ""
    if not code:
        raise SsoRefused("token", "the answer carries no authorization code")
    try:
        params = app._format_state_params(kept, {"code": code})
        if kept.get("redirect_uri") != redirect_uri:
            raise SsoRefused("state", "the answer came back to another address than it was sent from")
        token = app.fetch_access_token(**params)
    except MismatchingStateError:
        raise SsoRefused("state", "the answer's state is unknown here") from None
    except OAuthError as exc:
        raise SsoRefused("token", f"the token endpoint refused ({str(exc.error)[:64]})") from None
    except (HttpFailure, requests.RequestException) as exc:
        raise SsoRefused(
            "unreachable", f"the token endpoint cannot be reached ({type(exc).__name__})"
        ) from None
    except ValueError as exc:
        raise SsoRefused("token", f"the token answer cannot be read ({type(exc).__name__})") from None
    claims = id_token_verify(
        provider=provider,
        token=token,
        nonce=str(kept.get("nonce") or ""),
        max_age=str(kept.get("max_age", "")),
    )
    context = kept.get("context")
    return CompletedAuthorization(
        purpose=str(kept.get("purpose", "")),
        context={str(k): str(v) for k, v in (context or {}).items()} if isinstance(context, dict) else {},
        claims=claims,
        token=dict(token),
        started_at=int(kept.get("started_at", 0)),
    )


def userinfo_fetch(*, provider: OidcProvider, access_token: str) -> dict[str, Any]:
    """The provider's current view of the person (its userinfo endpoint), for a re-check of their groups.
    ``SsoRefused("token")`` when the access token is no longer accepted."""
    metadata = provider_metadata(provider)
    endpoint = str(metadata.get("userinfo_endpoint") or "")
    if not endpoint:
        raise SsoRefused("metadata", "the provider has no userinfo endpoint")
    session_class = gateway_session_class(provider.hosts)
    try:
        with session_class(
            client_id=provider.client_id, token={"access_token": access_token, "token_type": "Bearer"}
        ) as session:
            response = session.get(endpoint)
    except (HttpFailure, requests.RequestException) as exc:
        raise SsoRefused(
            "unreachable", f"the userinfo endpoint cannot be reached ({type(exc).__name__})"
        ) from None
    if response.status_code in (400, 401, 403):
        raise SsoRefused(
            "token", f"the userinfo endpoint refused the access token (HTTP {response.status_code})"
        )
    if response.status_code != 200:
        raise SsoRefused("unreachable", f"the userinfo endpoint answered HTTP {response.status_code}")
    try:
        data = response.json()
    except ValueError:
        raise SsoRefused("claims", "the userinfo answer is not JSON") from None
    if not isinstance(data, dict):
        raise SsoRefused("claims", "the userinfo answer is not an object")
    return data


def tokens_refresh(*, provider: OidcProvider, refresh_token: str) -> dict[str, Any]:
    """New tokens for a refresh token; the new id_token (where the provider sends one) is verified and its
    claims are under ``"claims"``. ``SsoRefused("token")`` when the refresh token is refused (the person
    was signed out or removed at the provider)."""
    metadata = provider_metadata(provider)
    app = _app(provider)
    try:
        with app._get_oauth_client(**metadata) as client:
            token = dict(client.refresh_token(metadata["token_endpoint"], refresh_token=refresh_token))
    except OAuthError as exc:
        raise SsoRefused("token", f"the refresh token was refused ({str(exc.error)[:64]})") from None
    except (HttpFailure, requests.RequestException) as exc:
        raise SsoRefused(
            "unreachable", f"the token endpoint cannot be reached ({type(exc).__name__})"
        ) from None
    except (KeyError, ValueError) as exc:
        raise SsoRefused("token", f"the refresh answer cannot be read ({type(exc).__name__})") from None
    if token.get("id_token"):
        token["claims"] = id_token_verify(provider=provider, token=token, nonce=None)
    return token


def end_session_url(*, provider: OidcProvider, id_token_hint: str, post_logout_redirect_uri: str) -> str:
    """Where to send the person so that the provider ends its own session too (OpenID Connect RP-Initiated
    Logout 1.0), or "" when the provider does not offer it."""
    try:
        metadata = provider_metadata(provider)
    except SsoRefused:
        return ""
    if not metadata.get("end_session_endpoint"):
        return ""
    if url_host(str(metadata["end_session_endpoint"])) not in provider.hosts:
        return ""
    created = _app(provider).create_logout_url(
        post_logout_redirect_uri=post_logout_redirect_uri,
        id_token_hint=id_token_hint or None,
        client_id=provider.client_id,
    )
    return str(created["url"])
