"""The one way out: every outbound HTTP request this project makes (pushes to an EHR, CDS Hooks fetches
from its FHIR server, JWK Sets, the EHR-side client) goes through ``http_request``.

The rules live here so that no caller can forget one:

- **No redirects.** A 3xx is raised as a permanent ``HttpFailure``, never followed: urllib would turn a
  redirected POST into a GET to ``Location`` carrying our bearer token, and count that GET's 200 as the
  POST delivered. The only ``Location`` worth trusting is the URL the operator registered.
- **Only where the caller allows.** https to a host on the caller's allowlist; plain http only to a
  loopback host (a stand-in on the same machine) unless the caller says otherwise; never credentials in the
  URL.
- **Bounded in time and size.** ``timeout_seconds`` bounds connecting and each read, and the whole
  exchange gets a deadline of the same length checked between reads of the body, so a server dripping
  one byte at a time cannot hold a worker; past it a request gives up within one more read's timeout.
  A body larger than ``max_response_bytes`` is refused from its Content-Length, or as soon as the count
  passes the cap: it is never read whole.
- **Nothing secret in logs or errors.** This module logs nothing, and a failure's message names no
  header, no body and no URL (paths carry patient ids).

Failures are told apart as in healthchecks' ``TransportError(permanent=...)``: no connection, a timeout,
408, 425, 429 and the retryable 5xx are transient; everything else, 3xx included, is permanent.
``HttpFailure`` is an ``OSError`` so that callers which already catch network errors keep doing so.
"""

from __future__ import annotations

import email.utils
import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import SplitResult, urlsplit

# Plain http is allowed for these hosts unless the caller allows it everywhere: a server on this machine.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Worth another try later. 500 is there because EHR servers answer it for overload as often as for bugs;
# 501 (not implemented) and 505 (version) will not change by waiting.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_READ_CHUNK_BYTES = 64 * 1024


class HttpFailure(OSError):
    """A request that did not get a usable answer. ``permanent``: trying again will not help (a refused
    URL, a redirect, an oversized answer); otherwise it may (no connection, a timeout). ``status`` is the
    HTTP status where there was one; ``retry_after`` the server's Retry-After in seconds, if given."""

    def __init__(
        self, message: str, *, permanent: bool, status: int | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class HttpReply:
    """An answer that was not a redirect. ``headers`` keys are lower case; ``body`` is at most the cap."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def transient(self) -> bool:
        """A refusal worth another try later (see TRANSIENT_STATUSES)."""
        return self.status in TRANSIENT_STATUSES

    @property
    def retry_after(self) -> int | None:
        return retry_after_seconds(self.headers.get("retry-after", ""))


def retry_after_seconds(value: str, *, now: datetime | None = None) -> int | None:
    """Retry-After (RFC 9110 10.2.3) in whole seconds from now: delay-seconds or an HTTP-date; None when
    absent or unreadable. A date in the past is 0."""
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return int(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT; a zone-less one is read as such
        when = when.replace(tzinfo=UTC)
    return max(0, int((when - (now or datetime.now(UTC))).total_seconds()))


def url_host(url: str) -> str:
    """The lower-case host of ``url`` ("" when it has none): what callers put on their allowlists."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def url_check(
    url: str, *, allowed_hosts: Collection[str], allow_plain_http: bool = False, what: str = "the URL"
) -> SplitResult:
    """The parsed URL when a request may go to it; a permanent ``HttpFailure`` saying why not, naming the
    URL as ``what`` (never quoting it)."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - parsing the port raises ValueError on a malformed one
    except ValueError:
        raise HttpFailure(f"{what} cannot be parsed", permanent=True) from None
    if not host:
        raise HttpFailure(f"{what} has no host", permanent=True)
    if parts.username is not None or parts.password is not None:
        raise HttpFailure(f"{what} must not carry credentials", permanent=True)
    if host not in {h.lower() for h in allowed_hosts}:
        raise HttpFailure(f"{what} names a host this request may not go to", permanent=True)
    if parts.scheme == "https":
        return parts
    if parts.scheme == "http" and (allow_plain_http or host in LOOPBACK_HOSTS):
        return parts
    raise HttpFailure(
        f"{what} must be https (plain http only for 127.0.0.1, ::1 or localhost)", permanent=True
    )


class _EveryAnswerAsItCame(urllib.request.HTTPErrorProcessor):
    """Hands each answer back untouched: urllib then raises no HTTPError for 4xx/5xx, and its redirect
    handler, which only an HTTPError reaches, never sees a 3xx, so nothing is ever followed."""

    def http_response(self, request: urllib.request.Request, response: Any) -> Any:
        return response

    https_response = http_response


def _body_read(response: http.client.HTTPResponse, *, max_bytes: int, deadline: float) -> bytes:
    declared = response.getheader("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
        raise HttpFailure(
            f"the answer is larger than {max_bytes} bytes", permanent=True, status=response.status
        )
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise HttpFailure("the answer took too long to arrive", permanent=False, status=response.status)
        # read1: at most one read from the socket, so the deadline is checked between every two of them.
        chunk = response.read1(_READ_CHUNK_BYTES)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise HttpFailure(
                f"the answer is larger than {max_bytes} bytes", permanent=True, status=response.status
            )
        chunks.append(chunk)


def http_request(
    method: str,
    url: str,
    *,
    allowed_hosts: Collection[str],
    timeout_seconds: float,
    max_response_bytes: int,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    allow_plain_http: bool = False,
) -> HttpReply:
    """Send one request and return the answer (2xx, 4xx or 5xx: the caller decides what it means, e.g.
    with ``HttpReply.ok`` and ``.transient``). Raises ``HttpFailure``: permanent for a refused URL, a
    redirect or an oversized answer; transient for no connection or a timeout."""
    url_check(url, allowed_hosts=allowed_hosts, allow_plain_http=allow_plain_http)
    request = urllib.request.Request(  # noqa: S310 - url_check allowed only http(s) just above
        url, data=body, method=method, headers=dict(headers or {})
    )
    opener = urllib.request.build_opener(_EveryAnswerAsItCame)
    deadline = time.monotonic() + timeout_seconds
    try:
        with opener.open(request, timeout=timeout_seconds) as response:
            status = int(response.status)
            if 300 <= status < 400:
                raise HttpFailure(
                    f"the server answered HTTP {status} (a redirect, which is never followed)",
                    permanent=True,
                    status=status,
                )
            raw = _body_read(response, max_bytes=max_response_bytes, deadline=deadline)
            answer_headers = {name.lower(): value for name, value in response.headers.items()}
    except HttpFailure:
        raise
    except TimeoutError:
        raise HttpFailure("the server did not answer in time", permanent=False) from None
    except urllib.error.URLError as exc:
        # No connection: refused, unreachable, name not resolved, TLS handshake failed.
        reason = type(exc.reason).__name__ if isinstance(exc.reason, BaseException) else "URLError"
        raise HttpFailure(f"the server cannot be reached ({reason})", permanent=False) from None
    except (OSError, http.client.HTTPException) as exc:
        # The connection broke mid-answer (reset, closed early, a garbled status line).
        raise HttpFailure(f"the server cannot be reached ({type(exc).__name__})", permanent=False) from None
    return HttpReply(status=status, headers=answer_headers, body=raw)
