"""The one way out: every outbound HTTP request this project makes (pushes to an EHR, CDS Hooks fetches
from its FHIR server, JWK Sets, the EHR-side client, Bulk Data downloads) goes through ``http_request``, or
``http_stream`` for an answer read as it arrives (an NDJSON file of any size), both on the same internals.

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
  passes the cap: it is never read whole. ``http_stream`` takes the deadline separately (``total_seconds``:
  a large file may take long, each read may not), and a body cut short of its Content-Length is a transient
  failure, never a short answer taken as whole.
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
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
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


def _failure_of(exc: BaseException, *, status: int | None = None) -> HttpFailure:
    """The transient ``HttpFailure`` for a network error from urllib or http.client (naming only its
    type: an exception's text may quote the URL)."""
    if isinstance(exc, TimeoutError):
        return HttpFailure("the server did not answer in time", permanent=False, status=status)
    if isinstance(exc, urllib.error.URLError):
        # No connection: refused, unreachable, name not resolved, TLS handshake failed.
        reason = type(exc.reason).__name__ if isinstance(exc.reason, BaseException) else "URLError"
        return HttpFailure(f"the server cannot be reached ({reason})", permanent=False, status=status)
    # The connection broke mid-answer (reset, closed early, a garbled status line or chunk).
    return HttpFailure(f"the server cannot be reached ({type(exc).__name__})", permanent=False, status=status)


class HttpStream:
    """An answer whose body is read as it arrives (``http_stream``). ``headers`` keys are lower case.

    Every read keeps the exchange's rules: the deadline is checked before each read from the socket, the
    count of bytes received is checked against the cap after each, and a connection that closes before the
    declared Content-Length (or mid-chunk) is a transient ``HttpFailure``, never a short body taken as whole.
    """

    def __init__(self, response: http.client.HTTPResponse, *, deadline: float, max_total_bytes: int) -> None:
        self.status = int(response.status)
        self.headers: Mapping[str, str] = {name.lower(): value for name, value in response.headers.items()}
        self._response = response
        self._deadline = deadline
        self._max_total_bytes = max_total_bytes
        declared = self.headers.get("content-length", "").strip()
        self._declared = int(declared) if declared.isdigit() else None
        self.received = 0

    def _too_large(self, cap: int) -> HttpFailure:
        return HttpFailure(f"the answer is larger than {cap} bytes", permanent=True, status=self.status)

    def _read_once(self) -> bytes:
        if time.monotonic() > self._deadline:
            raise HttpFailure("the answer took too long to arrive", permanent=False, status=self.status)
        try:
            # read1: at most one read from the socket, so the deadline is checked between every two of them.
            chunk = self._response.read1(_READ_CHUNK_BYTES)
        except (OSError, http.client.HTTPException) as exc:
            raise _failure_of(exc, status=self.status) from None
        if not chunk:
            if self._declared is not None and self.received < self._declared:
                raise HttpFailure(
                    "the connection closed before the whole answer arrived",
                    permanent=False,
                    status=self.status,
                )
            return b""
        self.received += len(chunk)
        if self.received > self._max_total_bytes:
            raise self._too_large(self._max_total_bytes)
        return chunk

    def chunks(self) -> Iterator[bytes]:
        """The body, piece by piece as it arrives (at most 64 KiB each). Raises ``HttpFailure``: transient
        past the deadline, on a timeout or a dropped connection; permanent once the body passes the cap."""
        if self._declared is not None and self._declared > self._max_total_bytes:
            raise self._too_large(self._max_total_bytes)
        while chunk := self._read_once():
            yield chunk

    def read_small(self, max_bytes: int) -> bytes:
        """The whole body when it is at most ``max_bytes`` (an error answer, a manifest); a permanent
        ``HttpFailure`` as soon as it is known to be larger, from its Content-Length or its count."""
        cap = min(max_bytes, self._max_total_bytes)
        if self._declared is not None and self._declared > cap:
            raise self._too_large(cap)
        pieces: list[bytes] = []
        size = 0
        while chunk := self._read_once():
            size += len(chunk)
            if size > cap:
                raise self._too_large(cap)
            pieces.append(chunk)
        return b"".join(pieces)


def _open(
    method: str,
    url: str,
    *,
    allowed_hosts: Collection[str],
    timeout_seconds: float,
    headers: Mapping[str, str] | None,
    body: bytes | None,
    allow_plain_http: bool,
) -> http.client.HTTPResponse:
    """Send the request and read the status line and headers; the response, never a redirect."""
    url_check(url, allowed_hosts=allowed_hosts, allow_plain_http=allow_plain_http)
    request = urllib.request.Request(  # noqa: S310 - url_check allowed only http(s) just above
        url, data=body, method=method, headers=dict(headers or {})
    )
    opener = urllib.request.build_opener(_EveryAnswerAsItCame)
    try:
        response: http.client.HTTPResponse = opener.open(request, timeout=timeout_seconds)
    except (OSError, http.client.HTTPException) as exc:
        raise _failure_of(exc) from None
    status = int(response.status)
    if 300 <= status < 400:
        response.close()
        raise HttpFailure(
            f"the server answered HTTP {status} (a redirect, which is never followed)",
            permanent=True,
            status=status,
        )
    return response


@contextmanager
def http_stream(
    method: str,
    url: str,
    *,
    allowed_hosts: Collection[str],
    timeout_seconds: float,
    total_seconds: float,
    max_total_bytes: int,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    allow_plain_http: bool = False,
) -> Iterator[HttpStream]:
    """Send one request and hand over its answer to read as it arrives (an NDJSON file of any size), on the
    same rules as ``http_request``: ``timeout_seconds`` bounds connecting and each read, ``total_seconds``
    the whole exchange (checked between reads), ``max_total_bytes`` the body. The connection is closed when
    the block ends, read to the end or not. Raises ``HttpFailure`` on opening as ``http_request`` does, and
    from ``HttpStream.chunks``/``read_small`` while reading."""
    deadline = time.monotonic() + total_seconds
    response = _open(
        method,
        url,
        allowed_hosts=allowed_hosts,
        timeout_seconds=timeout_seconds,
        headers=headers,
        body=body,
        allow_plain_http=allow_plain_http,
    )
    with response:
        yield HttpStream(response, deadline=deadline, max_total_bytes=max_total_bytes)


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
    redirect or an oversized answer; transient for no connection, a timeout or a body cut short."""
    with http_stream(
        method,
        url,
        allowed_hosts=allowed_hosts,
        timeout_seconds=timeout_seconds,
        total_seconds=timeout_seconds,
        max_total_bytes=max_response_bytes,
        headers=headers,
        body=body,
        allow_plain_http=allow_plain_http,
    ) as stream:
        raw = stream.read_small(max_response_bytes)
    return HttpReply(status=stream.status, headers=stream.headers, body=raw)
