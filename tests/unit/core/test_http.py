"""The one outbound HTTP module, against a real server on 127.0.0.1 standing in for an EHR: redirects,
refusals, a body that drips, a body that never ends. No mocks: what the stand-in saw is the evidence."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from clinical_ai.core.http import HttpFailure, HttpReply, http_request, retry_after_seconds, url_check
from tests.stand_in import loopback_server

TOKEN = "secret-bearer-token-0123456789"
CAP = 4096


@dataclass
class StandIn:
    """Answers by path; records (method, path, Authorization) of every request it gets."""

    url: str = ""
    seen: list[tuple[str, str, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    bytes_sent: int = 0


def _handler(state: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _head(self, status: int, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()

        def _json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            raw = json.dumps(body).encode()
            self._head(
                status,
                {"Content-Type": "application/json", "Content-Length": str(len(raw)), **(headers or {})},
            )
            self.wfile.write(raw)

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            state.seen.append((self.command, self.path, self.headers.get("Authorization", "")))
            route = self.path.split("?")[0]
            if route.startswith("/redirect/"):
                status = int(route.rsplit("/", 1)[1])
                self._head(status, {"Location": f"{state.url}/landing", "Content-Length": "0"})
            elif route == "/landing":
                self._json(200, {"landed": True})
            elif route == "/ok":
                self._json(200, {"resourceType": "Bundle", "type": "transaction-response"})
            elif route == "/error/500":
                self._json(500, {"resourceType": "OperationOutcome"}, {"Retry-After": "7"})
            elif route == "/error/429":
                self._json(429, {}, {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"})
            elif route == "/error/422":
                self._json(422, {"resourceType": "OperationOutcome"})
            elif route == "/slow-head":
                state.stop.wait(5)
                self._json(200, {})
            elif route == "/slow-body":
                # Each byte comes well within the read timeout, so only a deadline can stop this.
                self._head(200, {"Content-Type": "application/json", "Content-Length": "1000"})
                self._drip(lambda: b" ", pause=0.05)
            elif route == "/declared-huge":
                self._head(
                    200, {"Content-Type": "application/json", "Content-Length": str(100 * 1024 * 1024)}
                )
                self._drip(lambda: b"x" * 1024, pause=0.05)
            elif route == "/endless":
                # Chunked, no length: a size cap can only be kept by counting what arrives.
                self._head(200, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
                self._drip(lambda: b"4000\r\n" + b"x" * 0x4000 + b"\r\n", pause=0.0)
            else:
                self._json(404, {})

        def _drip(self, piece: Callable[[], bytes], *, pause: float) -> None:
            try:
                while not state.stop.is_set():
                    data = piece()
                    self.wfile.write(data)
                    self.wfile.flush()
                    state.bytes_sent += len(data)
                    if pause:
                        time.sleep(pause)
            except OSError:
                pass  # the client hung up: what we want
            self.close_connection = True

        do_GET = do_POST = do_PUT = _serve

    return Handler


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    state = StandIn()
    with loopback_server(_handler(state)) as state.url:
        yield state
        state.stop.set()  # a dripping or endless body stops before the server does


def _send(stand_in: StandIn, path: str, *, method: str = "POST", timeout: float = 2) -> HttpReply:
    return http_request(
        method,
        f"{stand_in.url}{path}",
        allowed_hosts={"127.0.0.1"},
        timeout_seconds=timeout,
        max_response_bytes=CAP,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/fhir+json"},
        body=b'{"resourceType": "Bundle"}' if method == "POST" else None,
    )


def test_a_2xx_comes_back_with_its_body_and_lower_case_headers(stand_in: StandIn) -> None:
    reply = _send(stand_in, "/ok")
    assert reply.ok and not reply.transient and reply.status == 200
    assert json.loads(reply.body)["type"] == "transaction-response"
    assert reply.headers["content-type"] == "application/json"


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_never_followed_and_fails_for_good(stand_in: StandIn, status: int, method: str) -> None:
    with pytest.raises(HttpFailure) as raised:
        _send(stand_in, f"/redirect/{status}", method=method)
    assert raised.value.permanent and raised.value.status == status
    # The stand-in saw the one request, never a second one at the Location (with or without the token).
    assert stand_in.seen == [(method, f"/redirect/{status}", f"Bearer {TOKEN}")]


def test_5xx_is_an_answer_worth_retrying_with_its_retry_after(stand_in: StandIn) -> None:
    reply = _send(stand_in, "/error/500")
    assert reply.status == 500 and reply.transient and not reply.ok
    assert reply.retry_after == 7


def test_429_with_an_http_date_retry_after(stand_in: StandIn) -> None:
    reply = _send(stand_in, "/error/429")
    assert reply.transient and reply.retry_after is not None and reply.retry_after > 365 * 24 * 3600


def test_a_4xx_refusal_is_not_transient(stand_in: StandIn) -> None:
    reply = _send(stand_in, "/error/422")
    assert reply.status == 422 and not reply.transient and not reply.ok and reply.retry_after is None


def test_a_body_that_drips_is_cut_off_at_the_deadline(stand_in: StandIn) -> None:
    started = time.monotonic()
    with pytest.raises(HttpFailure) as raised:
        _send(stand_in, "/slow-body", timeout=0.5)
    elapsed = time.monotonic() - started
    assert not raised.value.permanent and raised.value.status == 200
    assert "too long" in str(raised.value)
    assert elapsed < 2.0  # the deadline, plus at most one read timeout


def test_a_server_that_does_not_answer_times_out(stand_in: StandIn) -> None:
    started = time.monotonic()
    with pytest.raises(HttpFailure) as raised:
        _send(stand_in, "/slow-head", timeout=0.3)
    assert not raised.value.permanent and raised.value.status is None
    assert time.monotonic() - started < 2.0


def test_a_declared_oversized_body_is_refused_before_reading_it(stand_in: StandIn) -> None:
    started = time.monotonic()
    with pytest.raises(HttpFailure) as raised:
        _send(stand_in, "/declared-huge", timeout=5)
    assert raised.value.permanent and "larger than" in str(raised.value)
    assert time.monotonic() - started < 2.0  # 100 MiB at 20 KiB/s would take an hour and a half


def test_an_endless_body_is_refused_once_it_passes_the_cap(stand_in: StandIn) -> None:
    with pytest.raises(HttpFailure) as raised:
        _send(stand_in, "/endless", timeout=5)
    assert raised.value.permanent and "larger than" in str(raised.value)


def test_no_connection_is_transient() -> None:
    with pytest.raises(HttpFailure) as raised:
        http_request(
            "GET",
            "http://127.0.0.1:9/fhir",
            allowed_hosts={"127.0.0.1"},
            timeout_seconds=2,
            max_response_bytes=CAP,
        )
    assert not raised.value.permanent and raised.value.status is None
    assert "cannot be reached" in str(raised.value)


def test_a_host_off_the_allowlist_is_refused_before_any_connection(stand_in: StandIn) -> None:
    with pytest.raises(HttpFailure) as raised:
        http_request(
            "GET",
            f"{stand_in.url}/ok",
            allowed_hosts={"ehr.example.org"},
            timeout_seconds=2,
            max_response_bytes=CAP,
        )
    assert raised.value.permanent and stand_in.seen == []


@pytest.mark.parametrize(
    ("url", "allow_plain_http"),
    [
        ("http://ehr.example.org/fhir", False),  # plain http off this machine
        ("ftp://ehr.example.org/fhir", True),
        ("file:///etc/passwd", True),
        ("https://user:pw@ehr.example.org/fhir", False),
        ("https://ehr.example.org:99999/fhir", False),
        ("https:///fhir", False),
        ("https://other.example.org/fhir", False),  # not on the allowlist
    ],
)
def test_refused_urls(url: str, allow_plain_http: bool) -> None:
    with pytest.raises(HttpFailure) as raised:
        url_check(url, allowed_hosts={"ehr.example.org"}, allow_plain_http=allow_plain_http)
    assert raised.value.permanent


@pytest.mark.parametrize(
    ("url", "allow_plain_http"),
    [
        ("https://EHR.example.org/fhir", False),
        ("http://ehr.example.org/fhir", True),  # the caller allows plain http (the EHR-side dev client)
        ("http://localhost:8000/fhir", False),
        ("http://[::1]:8000/fhir", False),
    ],
)
def test_allowed_urls(url: str, allow_plain_http: bool) -> None:
    url_check(url, allowed_hosts={"ehr.example.org", "localhost", "::1"}, allow_plain_http=allow_plain_http)


def test_nothing_secret_reaches_logs_or_failure_messages(
    stand_in: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    failures: list[str] = []
    for path in ("/ok", "/error/500", "/redirect/302", "/endless", "/slow-body?patient=pat-123"):
        try:
            _send(stand_in, path, timeout=0.3)
        except HttpFailure as exc:
            failures.append(str(exc))
    assert len(failures) == 3
    for text in [*failures, caplog.text]:
        assert (
            TOKEN not in text and "Bundle" not in text and "pat-123" not in text and "/redirect" not in text
        )


def test_retry_after_forms() -> None:
    now = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now=now) == 120
    assert retry_after_seconds(" 0 ", now=now) == 0
    assert retry_after_seconds("Tue, 01 Jan 2030 12:01:30 GMT", now=now) == 90
    assert retry_after_seconds("Mon, 31 Dec 2029 12:00:00 GMT", now=now) == 0  # in the past
    assert retry_after_seconds("", now=now) is None
    assert retry_after_seconds("-5", now=now) is None
    assert retry_after_seconds("soon", now=now) is None
