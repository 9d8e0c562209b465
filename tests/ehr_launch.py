"""An EHR's SMART App Launch 2.x authorization side (EHR launch), for the launch tests: Authlib's
framework-free ``AuthorizationServer`` with its authorization-code grant, OpenID Connect (nonce required) and
PKCE, served by a real HTTP server on the loopback interface (``tests.stand_in.loopback_server``).

The fixture ``smart_ehr`` (registered for every test by ``tests/conftest.py``) gives a started
``EhrLaunchStandIn``. A test registers the gateway as a SMART app and starts a launch as the EHR would when a
clinician opens the app from a patient's chart::

    smart_ehr.register_client("clinical-ai", [f"{live_server.url}/launch/callback"], secret="s3cret")
    launch = smart_ehr.new_launch(patient="123", fhir_user="Practitioner/abc")
    browser.page.goto(smart_ehr.launch_url(f"{live_server.url}/launch", launch))   # ?iss=...&launch=...

What it serves, under ``ehr.base_url`` (``http://127.0.0.1:PORT``):

- ``{fhir_base}/.well-known/smart-configuration`` (``fhir_base`` = ``{base_url}/fhir``, the ``iss`` of the
  launch) and ``{issuer}/.well-known/openid-configuration`` (``issuer`` = ``base_url``);
- ``/authorize``: the person is already signed in to the EHR, so a request carrying a known ``launch`` and
  ``aud`` = ``fhir_base`` is approved at once, as that launch's EHR user, and redirected back with a code. A
  missing or unknown ``launch`` or another ``aud`` is sent back as ``invalid_request``; PKCE with S256 and a
  nonce are required (SMART 2.0 requires S256 of every app);
- ``/token``: the code with its PKCE verifier for an access token, ``scope``, the launch context (``patient``,
  ``encounter`` where set, ``appContext`` where set, as CDS Hooks passes it) and an ``id_token`` (RS256;
  ``iss``, ``sub``, ``aud`` = the client id, ``nonce``, ``iat``, ``exp``, ``auth_time``, and ``fhirUser`` as
  the absolute URL ``{fhir_base}/Practitioner/abc`` when the scope asks for ``fhirUser``);
- ``/jwks``: the public key.

Knobs for the bad-input tests, read when the token is issued: ``id_token_ttl`` (seconds; zero or negative
gives an id_token whose ``exp`` has passed), ``wrong_nonce`` (the id_token carries another nonce than the one
the app sent), ``issuer_override`` (the id_token's ``iss``, in place of the registered issuer).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import RSAKey

from tests.stand_in import loopback_server

SCOPES_SUPPORTED = [
    "openid",
    "fhirUser",
    "launch",
    "launch/patient",
    "patient/*.rs",
    "user/*.rs",
    "offline_access",
]
CODE_TTL = 60
ACCESS_TOKEN_TTL = 300


@dataclass(frozen=True)
class EhrUser:
    """The person signed in to the EHR."""

    sub: str
    fhir_user: str  # absolute URL, e.g. http://127.0.0.1:PORT/fhir/Practitioner/abc
    auth_time: int


@dataclass(frozen=True)
class Launch:
    launch_id: str
    user: EhrUser
    patient: str
    encounter: str | None
    app_context: str | None


@dataclass
class SmartClient(ClientMixin):  # type: ignore[misc]
    client_id: str
    redirect_uris: list[str]
    secret: str | None  # None: a public client (PKCE only)

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        return scope

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return self.secret is not None and secrets.compare_digest(self.secret, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.secret is None:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class AuthorizationCode:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str
    code_challenge_method: str
    launch: Launch
    issued_at: float = field(default_factory=time.time)

    # Authlib's AuthorizationCodeMixin and the OpenID one, by duck typing.
    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.launch.user.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, values: Mapping[str, list[str]]) -> None:
        self._datalist = defaultdict(list, {key: list(value) for key, value in values.items()})

    @property
    def data(self) -> dict[str, str]:
        return {key: values[0] for key, values in self._datalist.items() if values}

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


@dataclass(frozen=True)
class HttpCall:
    """One request as the stdlib server received it."""

    method: str
    url: str
    headers: Any  # email.message.Message: case-insensitive get()
    query: dict[str, list[str]]
    form: dict[str, list[str]]


class _Request(OAuth2Request):  # type: ignore[misc]
    def __init__(self, call: HttpCall) -> None:
        super().__init__(call.method, call.url, headers=call.headers)
        self._call = call
        self.payload = _Payload({**call.query, **call.form})

    @property
    def args(self) -> dict[str, str]:
        return {key: values[0] for key, values in self._call.query.items()}

    @property
    def form(self) -> dict[str, str]:
        return {key: values[0] for key, values in self._call.form.items()}


class _PkceS256Required(CodeChallenge):  # type: ignore[misc]
    """Authlib's PKCE, with a challenge required of every client and S256 the one method (SMART 2.0)."""

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge': PKCE is required.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


class _OpenIdWithKnobs(OpenIDCode):  # type: ignore[misc]
    def __init__(self, ehr: EhrLaunchStandIn) -> None:
        super().__init__(require_nonce=True)
        self.ehr = ehr

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        client_id = request.payload.client_id
        return any(c.client_id == client_id and c.nonce == nonce for c in self.ehr.codes.values())

    def resolve_client_private_key(self, client: SmartClient) -> RSAKey:
        return self.ehr.signing_key

    def get_client_algorithm(self, client: SmartClient) -> str:
        return "RS256"

    def get_encode_header(self, client: SmartClient) -> dict[str, str]:
        return {"alg": "RS256", "kid": str(self.ehr.signing_key.kid)}

    def get_client_claims(self, client: SmartClient) -> dict[str, Any]:
        now = int(time.time())
        expires = now + self.ehr.id_token_ttl
        issued = min(now, expires - 300)  # an already-expired token was issued before it expired
        return {
            "iss": self.ehr.issuer_override or self.ehr.issuer,
            "aud": client.client_id,
            "iat": issued,
            "exp": expires,
        }

    def get_authorization_code_claims(self, authorization_code: AuthorizationCode) -> dict[str, Any]:
        claims: dict[str, Any] = super().get_authorization_code_claims(authorization_code)
        if self.ehr.wrong_nonce:
            claims["nonce"] = secrets.token_urlsafe(16)
        return claims

    def generate_user_info(self, user: EhrUser, scope: str) -> UserInfo:
        info = UserInfo(sub=user.sub)
        if "fhirUser" in scope.split():
            info["fhirUser"] = user.fhir_user
        return info


class _SmartLaunchContext:
    """SMART's part of the grant: the ``launch`` and ``aud`` checks at /authorize, and the launch context in
    the token response."""

    def __init__(self, ehr: EhrLaunchStandIn) -> None:
        self.ehr = ehr

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_validate_authorization_request_payload", self.validate_launch)
        grant.register_hook("after_create_token_response", self.add_context)

    def validate_launch(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if data.get("aud") != self.ehr.fhir_base:
            raise InvalidRequestError(f"'aud' must be this EHR's FHIR base URL, {self.ehr.fhir_base}.")
        launch = self.ehr.launches.get(data.get("launch", ""))
        if launch is None:
            raise InvalidRequestError("Unknown or missing 'launch'.")
        if "launch" not in grant.request.payload.scope.split():
            raise InvalidRequestError("An EHR launch needs the 'launch' scope.")

    def add_context(self, grant: Any, response: tuple[int, dict[str, Any], Any]) -> None:
        _, token, _ = response
        launch: Launch = grant.request.authorization_code.launch
        token["patient"] = launch.patient
        if launch.encounter is not None:
            token["encounter"] = launch.encounter
        if launch.app_context is not None:
            token["appContext"] = launch.app_context


class _CodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    ehr: EhrLaunchStandIn  # set on the subclass made per stand-in

    def save_authorization_code(self, code: str, request: Any) -> None:
        data = request.payload.data
        self.ehr.codes[code] = AuthorizationCode(
            code=code,
            client_id=request.client.client_id,
            redirect_uri=data.get("redirect_uri", ""),
            scope=request.scope,
            nonce=data.get("nonce"),
            code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"],
            launch=self.ehr.launches[data["launch"]],
        )

    def query_authorization_code(self, code: str, client: SmartClient) -> AuthorizationCode | None:
        found = self.ehr.codes.get(code)
        if found is None or found.client_id != client.client_id or time.time() > found.issued_at + CODE_TTL:
            return None
        return found

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        self.ehr.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: AuthorizationCode) -> EhrUser:
        return authorization_code.launch.user


class _Server(AuthorizationServer):  # type: ignore[misc]
    """Authlib's authorization server over the stdlib HTTP server's requests."""

    def __init__(self, ehr: EhrLaunchStandIn) -> None:
        super().__init__(scopes_supported=None)  # SMART scopes are patterns (patient/*.rs); any is accepted
        self.ehr = ehr

    def query_client(self, client_id: str) -> SmartClient | None:
        return self.ehr.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        self.ehr.tokens.append({"client_id": request.client.client_id, "access_token": token["access_token"]})

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        return request if isinstance(request, OAuth2Request) else _Request(request)

    def create_json_request(self, request: Any) -> Any:
        raise NotImplementedError("the stand-in has no JSON endpoints")

    def handle_response(self, status: int, body: Any, headers: Any) -> tuple[int, Any, list[tuple[str, str]]]:
        return status, body, list(headers)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass


class EhrLaunchStandIn:
    """The EHR's authorization side. ``start``/``stop``, or the ``smart_ehr`` fixture."""

    def __init__(self) -> None:
        self.base_url = ""
        self.clients: dict[str, SmartClient] = {}
        self.launches: dict[str, Launch] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.tokens: list[dict[str, str]] = []  # what was issued (client id, access token), for assertions
        self.signing_key = RSAKey.generate_key(
            2048, parameters={"kid": secrets.token_hex(8), "alg": "RS256", "use": "sig"}
        )
        # The bad-input knobs (see the module's docstring).
        self.id_token_ttl = 300
        self.wrong_nonce = False
        self.issuer_override: str | None = None
        self._stack = ExitStack()
        self._lock = threading.Lock()
        self.server = _Server(self)
        grant = type("CodeGrant", (_CodeGrant,), {"ehr": self})
        self.server.register_grant(
            grant, [_PkceS256Required(required=True), _OpenIdWithKnobs(self), _SmartLaunchContext(self)]
        )
        self.server.register_token_generator(
            "default",
            BearerTokenGenerator(
                access_token_generator=lambda *args, **kwargs: secrets.token_urlsafe(32),
                expires_generator=lambda *args, **kwargs: ACCESS_TOKEN_TTL,
            ),
        )

    @property
    def issuer(self) -> str:
        return self.base_url

    @property
    def fhir_base(self) -> str:
        return f"{self.base_url}/fhir"

    # Set-up -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        self.base_url = self._stack.enter_context(loopback_server(self._handler()))

    def stop(self) -> None:
        self._stack.close()

    def register_client(
        self, client_id: str, redirect_uris: Sequence[str], secret: str | None = None
    ) -> SmartClient:
        """Register a SMART app: confidential (client_secret_basic or _post) with ``secret``, else public."""
        client = SmartClient(client_id, list(redirect_uris), secret)
        self.clients[client_id] = client
        return client

    def new_launch(
        self,
        *,
        patient: str,
        fhir_user: str,
        app_context: str | None = None,
        encounter: str | None = None,
        user: str | None = None,
        auth_time: int | None = None,
    ) -> str:
        """A clinician opens the app from a patient's chart: returns the opaque ``launch`` value. ``fhir_user``
        is relative (``Practitioner/abc``); ``user`` is the id_token's ``sub`` (the resource's id unless given)."""
        launch_id = secrets.token_urlsafe(16)
        ehr_user = EhrUser(
            sub=user or fhir_user.rsplit("/", 1)[-1],
            fhir_user=f"{self.fhir_base}/{fhir_user}",
            auth_time=auth_time if auth_time is not None else int(time.time()),
        )
        self.launches[launch_id] = Launch(launch_id, ehr_user, patient, encounter, app_context)
        return launch_id

    def launch_url(self, app_launch_url: str, launch_id: str) -> str:
        """Where the EHR sends the browser to start the app: ``app_launch_url?iss=<fhir_base>&launch=<id>``."""
        return f"{app_launch_url}?{urlencode({'iss': self.fhir_base, 'launch': launch_id})}"

    # Documents --------------------------------------------------------------------------------------------

    def smart_configuration(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.base_url}/jwks",
            "authorization_endpoint": f"{self.base_url}/authorize",
            "token_endpoint": f"{self.base_url}/token",
            "grant_types_supported": ["authorization_code"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "scopes_supported": SCOPES_SUPPORTED,
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "capabilities": [
                "launch-ehr",
                "client-public",
                "client-confidential-symmetric",
                "sso-openid-connect",
                "context-ehr-patient",
                "context-ehr-encounter",
                "permission-v2",
            ],
        }

    def openid_configuration(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.base_url}/authorize",
            "token_endpoint": f"{self.base_url}/token",
            "jwks_uri": f"{self.base_url}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": SCOPES_SUPPORTED,
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "fhirUser"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.signing_key.as_dict(private=False)]}

    # HTTP -------------------------------------------------------------------------------------------------

    def _answer(self, call: HttpCall) -> tuple[int, Any, list[tuple[str, str]]]:
        path = urlsplit(call.url).path
        documents = {
            "/fhir/.well-known/smart-configuration": self.smart_configuration,
            "/.well-known/openid-configuration": self.openid_configuration,
            "/jwks": self.jwks,
        }
        if call.method == "GET" and path in documents:
            return 200, documents[path](), []
        with self._lock:  # one grant at a time: the in-memory codes and nonces are shared
            if path == "/authorize" and call.method in ("GET", "POST"):
                launch = self.launches.get((call.query.get("launch") or call.form.get("launch") or [""])[0])
                user = launch.user if launch else None
                try:
                    grant = self.server.get_consent_grant(call, end_user=user)
                except OAuth2Error as error:  # Authlib renders it: a redirect back where the client is known
                    result: tuple[int, Any, list[tuple[str, str]]] = self.server.handle_error_response(
                        self.server.create_oauth2_request(call), error
                    )
                    return result
                answer: tuple[int, Any, list[tuple[str, str]]] = self.server.create_authorization_response(
                    call, grant_user=user, grant=grant
                )
                return answer
            if path == "/token" and call.method == "POST":
                token_answer: tuple[int, Any, list[tuple[str, str]]] = self.server.create_token_response(call)
                return token_answer
        return 404, {"error": "not_found"}, []

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        ehr = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8") if length else ""
                call = HttpCall(
                    method=self.command,
                    url=f"{ehr.base_url}{self.path}",
                    headers=self.headers,
                    query=parse_qs(split.query),
                    form=parse_qs(body) if self.command == "POST" else {},
                )
                status, payload, headers = ehr._answer(call)
                data = (
                    payload.encode("utf-8")
                    if isinstance(payload, str)
                    else json.dumps(payload).encode("utf-8")
                )
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                if data and not any(name.lower() == "content-type" for name, _ in headers):
                    self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _serve
            do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test's output stays readable

        return Handler


@pytest.fixture
def smart_ehr() -> Iterator[EhrLaunchStandIn]:
    """A started SMART EHR stand-in (no clients, no launches yet); stopped when the test ends."""
    ehr = EhrLaunchStandIn()
    ehr.start()
    try:
        yield ehr
    finally:
        ehr.stop()
