"""Authlib's OAuth 2.0 client session, with every request it makes sent through
``clinical_ai.core.http.http_request``: no redirect followed, only the provider's hosts, bounded in time
and size, nothing logged. Authlib builds the requests (PKCE, client authentication, token parsing); this
module only carries them."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from authlib.integrations.requests_client import OAuth2Session
from requests import PreparedRequest, Response
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from clinical_ai.core.http import http_request

# Discovery documents, JWK Sets and token answers are small; an identity provider that sends more is broken.
MAX_ANSWER_BYTES = 256 * 1024
TIMEOUT_SECONDS = 10.0


class GatewayHttpAdapter(BaseAdapter):
    """A requests transport that hands each request to ``http_request`` for ``allowed_hosts`` only."""

    def __init__(self, *, allowed_hosts: Collection[str]) -> None:
        super().__init__()
        self.allowed_hosts = frozenset(host.lower() for host in allowed_hosts)

    def send(  # type: ignore[override]
        self, request: PreparedRequest, stream: bool = False, timeout: Any = None, **kwargs: Any
    ) -> Response:
        raw = request.body
        if raw is not None and not isinstance(raw, str | bytes):
            raise TypeError("only a body given whole is sent")  # Authlib sends forms and JSON, never streams
        body = raw.encode("utf-8") if isinstance(raw, str) else raw
        headers = {
            str(name): value.decode("latin-1") if isinstance(value, bytes) else str(value)
            for name, value in request.headers.items()
        }
        reply = http_request(
            str(request.method or "GET"),
            str(request.url),
            allowed_hosts=self.allowed_hosts,
            timeout_seconds=TIMEOUT_SECONDS,
            max_response_bytes=MAX_ANSWER_BYTES,
            headers=headers,
            body=body,
        )
        response = Response()
        response.status_code = reply.status
        response.headers = CaseInsensitiveDict(reply.headers)
        response._content = reply.body
        response.url = str(request.url)
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        return None


def gateway_session_class(allowed_hosts: Collection[str]) -> type[OAuth2Session]:
    """An ``OAuth2Session`` class (what Authlib's Django client instantiates) whose requests go only to
    ``allowed_hosts`` through the project's HTTP module, for http and https alike."""
    hosts = frozenset(allowed_hosts)

    class GatewayOAuth2Session(OAuth2Session):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Mapping[str, Any]) -> None:
            super().__init__(*args, **kwargs)
            adapter = GatewayHttpAdapter(allowed_hosts=hosts)
            self.mount("https://", adapter)
            self.mount("http://", adapter)

    return GatewayOAuth2Session
