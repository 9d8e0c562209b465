"""The hospital's identity provider in the tests: panva's ``oidc-provider`` (OpenID Certified), run with Node.

``tests/oidc_provider/provider.mjs`` is the provider; ``make browser-tools`` installs it from the lock file
(``npm ci --prefix tests/oidc_provider``). Where ``node`` or that install is absent, the fixtures skip the test
with the reason.

Fixtures (registered for the whole test tree by ``tests/conftest.py``):

- ``oidc_provider``: a started provider whose client ``clinical-ai`` (secret ``CLIENT_SECRET``) may return to
  the Django test client's ``http://testserver`` (``/accounts/sso/callback/``, ``/review/signature/callback/``;
  after sign-out ``/accounts/login/``).
- ``oidc_provider_for(base_url, ...)``: the same for other origins, typically the live server for browser tests:
  ``idp = oidc_provider_for(live_server.url)``. The redirect URIs are registered exactly, as a hospital's IdP
  registers them, rather than opening the provider to any loopback URL; the live server's port is known when
  the test asks, so the factory starts the provider then.

Each provider is its own Node process (it starts in well under a second), stopped when the test ends.

Users live in a JSON file that the provider reads again at every account lookup: ``set_user``,
``set_groups`` and ``remove_user`` take effect at the provider's next token, refresh or userinfo answer. A
removed user's refresh token is refused (``invalid_grant``) and their access token is refused at userinfo
(401, ``invalid_token``). Signing out at the provider ends the refresh tokens issued in that session, as
the package does by default without ``offline_access``.

The provider's pages are plain HTML of our own: the sign-in page has "Username" and "Password" fields and a
"Sign in" button, and shows "Wrong username or password" on a wrong password; sign-out asks "Yes, sign me
out". ``authorize`` and ``end_session`` walk those pages with ``requests`` for tests that have no browser.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
import requests

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"
PROVIDER_SCRIPT = PROVIDER_DIR / "provider.mjs"
PROVIDER_PACKAGE = PROVIDER_DIR / "node_modules" / "oidc-provider" / "package.json"

CLIENT_ID = "clinical-ai"
CLIENT_SECRET = "test-client-secret-for-the-gateway"  # a test value; the provider runs on loopback only
USER_PASSWORD = "hospital-password-1"  # the default password of users made with set_user
DEFAULT_BASE_URL = "http://testserver"  # Django's test client
SSO_CALLBACK = "/accounts/sso/callback/"
SIGNATURE_CALLBACK = "/review/signature/callback/"
AFTER_LOGOUT = "/accounts/login/"
START_TIMEOUT = 60.0  # a loaded CI machine has taken more than 15 s to start Node and the provider
NODE_MAJOR_AT_LEAST = 20  # oidc-provider 9 uses the global Web Crypto API (Node 18 has it behind a flag)


def why_unavailable() -> str | None:
    """Why the provider cannot run here, or None when it can."""
    node = shutil.which("node")
    if node is None:
        return "the test identity provider runs with Node, and `node` is not on PATH"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    if int(version.lstrip("v").split(".")[0] or 0) < NODE_MAJOR_AT_LEAST:
        return f"the test identity provider (oidc-provider 9) needs Node {NODE_MAJOR_AT_LEAST} or later, not {version}"
    if not PROVIDER_PACKAGE.is_file():
        return "the test identity provider is not installed: run `make browser-tools` (npm ci in tests/oidc_provider)"
    return None


@dataclass
class OidcClientRegistration:
    client_id: str
    client_secret: str  # "" = a public client (PKCE only)
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str] = field(default_factory=list)
    grant_types: list[str] = field(default_factory=lambda: ["authorization_code", "refresh_token"])


class _Forms(HTMLParser):
    """The forms of a page: action, method, and the named inputs' values (the provider's own pages)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append({"action": values.get("action", ""), "id": values.get("id", ""), "fields": {}})
        elif tag == "input" and self.forms and values.get("name"):
            self.forms[-1]["fields"][values["name"]] = values.get("value", "")


def page_forms(html: str) -> list[dict[str, Any]]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


class OidcProviderProcess:
    """One oidc-provider in a Node process, with its users file and client registrations, in ``folder``."""

    def __init__(self, folder: Path, *, base_urls: Sequence[str] = (DEFAULT_BASE_URL,)) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.users_path = folder / "users.json"
        self.config_path = folder / "config.json"
        self.log_path = folder / "provider.log"
        self.clients: list[OidcClientRegistration] = []
        self.issuer = ""
        self.client_id = CLIENT_ID
        self.client_secret = CLIENT_SECRET
        # Token lifetimes in seconds that replace the provider's (e.g. {"IdToken": 1}); set before ``start``.
        self.ttl: dict[str, int] = {}
        self._process: subprocess.Popen[str] | None = None
        # The user's browser at the provider, for tests without Chromium: it keeps the provider's cookies,
        # so a second authorization finds the person still signed in there.
        self.user_agent = requests.Session()
        self._write_users({})
        self.add_client(
            CLIENT_ID,
            client_secret=CLIENT_SECRET,
            redirect_uris=[
                f"{base}{path}" for base in base_urls for path in (SSO_CALLBACK, SIGNATURE_CALLBACK)
            ],
            post_logout_redirect_uris=[f"{base}{AFTER_LOGOUT}" for base in base_urls],
        )

    # Set-up -----------------------------------------------------------------------------------------------

    def add_client(
        self,
        client_id: str,
        *,
        client_secret: str = "",
        redirect_uris: Sequence[str],
        post_logout_redirect_uris: Sequence[str] = (),
        grant_types: Sequence[str] = ("authorization_code", "refresh_token"),
    ) -> None:
        """Register another client (before ``start``: the provider reads its clients once)."""
        if self._process is not None:
            raise RuntimeError("clients are registered before the provider starts")
        self.clients.append(
            OidcClientRegistration(
                client_id,
                client_secret,
                list(redirect_uris),
                list(post_logout_redirect_uris),
                list(grant_types),
            )
        )

    def start(self) -> None:
        config = {
            "port": 0,
            "users": str(self.users_path),
            "clients": [vars(client) for client in self.clients],
            "ttl": self.ttl,
        }
        self.config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        with self.log_path.open("w", encoding="utf-8") as log:
            self._process = subprocess.Popen(
                ["node", str(PROVIDER_SCRIPT), str(self.config_path)],
                cwd=PROVIDER_DIR,
                stdin=subprocess.PIPE,  # closed when this process ends, and the provider then exits
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        self.issuer = self._await_ready()

    def _await_ready(self) -> str:
        assert self._process is not None and self._process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self._process.stdout], [], [], 0.1)
            if ready:
                line = self._process.stdout.readline()
                if line.startswith("oidc-provider ready "):
                    return str(json.loads(line.removeprefix("oidc-provider ready "))["issuer"])
                if not line and self._process.poll() is not None:
                    break
        self.stop()
        raise RuntimeError(f"the test identity provider did not start; its log:\n{self.log_text()}")

    def stop(self) -> None:
        self.user_agent.close()
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=5)
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None:
                pipe.close()
        self._process = None

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8") if self.log_path.exists() else ""

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def metadata(self) -> dict[str, Any]:
        response = requests.get(self.metadata_url, timeout=5)
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return document

    # Users ------------------------------------------------------------------------------------------------

    def users(self) -> dict[str, dict[str, Any]]:
        users: dict[str, dict[str, Any]] = json.loads(self.users_path.read_text(encoding="utf-8"))
        return users

    def _write_users(self, users: dict[str, dict[str, Any]]) -> None:
        # Replaced whole, so the provider never reads half a file.
        partial = self.users_path.with_suffix(".partial")
        partial.write_text(json.dumps(users, indent=2), encoding="utf-8")
        os.replace(partial, self.users_path)

    def set_user(self, sub: str, **fields: Any) -> dict[str, Any]:
        """Create or update the person ``sub``: the fields given replace theirs. A new person gets the
        password ``USER_PASSWORD``, ``preferred_username`` = ``sub``, no groups, unless given."""
        users = self.users()
        user = users.get(sub) or {"password": USER_PASSWORD, "preferred_username": sub, "groups": []}
        user.update(fields)
        users[sub] = user
        self._write_users(users)
        return user

    def set_groups(self, sub: str, groups: Sequence[str]) -> None:
        if sub not in self.users():
            raise KeyError(f"no user {sub!r} at the test identity provider")
        self.set_user(sub, groups=list(groups))

    def remove_user(self, sub: str) -> None:
        users = self.users()
        users.pop(sub, None)
        self._write_users(users)

    # The person at the provider, without a browser ---------------------------------------------------------

    def _inside(self, url: str) -> bool:
        return url == self.issuer or url.startswith(f"{self.issuer}/")

    def authorize(
        self, authorize_url: str, *, username: str | None = None, password: str | None = None
    ) -> str:
        """Open ``authorize_url`` as the person's browser would and, where the provider asks, sign in with
        ``username`` and ``password``; returns the URL the provider sends the browser back to (the client's
        redirect URI with ``code`` and ``state``, or with ``error``). Fails the test where the sign-in page
        appears without credentials to give, or refuses them."""
        url = authorize_url
        signed_in = False
        for _ in range(10):
            response = self.user_agent.get(url, allow_redirects=False, timeout=5)
            if response.is_redirect:
                url = urljoin(url, response.headers["Location"])
                if not self._inside(url):
                    return url
                continue
            if response.status_code != 200 or "Sign in" not in response.text:
                raise AssertionError(f"the provider answered {response.status_code}: {response.text[:500]}")
            if username is None or password is None or signed_in:
                raise AssertionError("the provider asked for the password and the test gave none (again)")
            [form] = page_forms(response.text)
            posted = self.user_agent.post(
                urljoin(url, form["action"]),
                data={"username": username, "password": password},
                allow_redirects=False,
                timeout=5,
            )
            if not posted.is_redirect:
                raise AssertionError(
                    f"the provider refused the sign-in: {posted.status_code} {posted.text[:300]}"
                )
            signed_in = True
            url = urljoin(url, posted.headers["Location"])
        raise AssertionError(f"the provider redirected too often; last {url}")

    def sign_in_page(self, authorize_url: str) -> requests.Response:
        """The provider's answer to ``authorize_url`` after its own redirects: the sign-in page, or a redirect
        out of the provider (the person was still signed in there)."""
        url = authorize_url
        for _ in range(10):
            response = self.user_agent.get(url, allow_redirects=False, timeout=5)
            if not response.is_redirect:
                return response
            url = urljoin(url, response.headers["Location"])
            if not self._inside(url):
                return response
        raise AssertionError("the provider redirected too often")

    def end_session(self, end_session_url: str) -> str:
        """Open the provider's sign-out URL and answer "Yes, sign me out"; returns where the provider sends
        the browser afterwards (the post-logout redirect URI, or the provider's own signed-out page)."""
        page = self.user_agent.get(end_session_url, allow_redirects=False, timeout=5)
        page.raise_for_status()
        [form] = [form for form in page_forms(page.text) if form["id"] == "op.logoutForm"]
        done = self.user_agent.post(
            urljoin(end_session_url, form["action"]),
            data={**form["fields"], "logout": "yes"},
            allow_redirects=False,
            timeout=5,
        )
        return urljoin(end_session_url, done.headers["Location"]) if done.is_redirect else done.url


@pytest.fixture
def oidc_provider_for(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., OidcProviderProcess]]:
    """Start a test identity provider whose ``clinical-ai`` client returns to ``base_url`` (and any more
    origins given); each is stopped when the test ends."""
    reason = why_unavailable()
    if reason:
        pytest.skip(reason)
    started: list[OidcProviderProcess] = []

    def start(
        *base_urls: str, configure: Callable[[OidcProviderProcess], None] | None = None
    ) -> OidcProviderProcess:
        provider = OidcProviderProcess(
            tmp_path_factory.mktemp("oidc-provider"), base_urls=base_urls or (DEFAULT_BASE_URL,)
        )
        if (
            configure is not None
        ):  # e.g. lambda idp: idp.add_client(...), before the provider reads its clients
            configure(provider)
        started.append(provider)
        provider.start()
        return provider

    try:
        yield start
    finally:
        for provider in started:
            provider.stop()


@pytest.fixture
def oidc_provider(oidc_provider_for: Callable[..., OidcProviderProcess]) -> OidcProviderProcess:
    """A started test identity provider for the Django test client (``http://testserver``)."""
    return oidc_provider_for(DEFAULT_BASE_URL)
