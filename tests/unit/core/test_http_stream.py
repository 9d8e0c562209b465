"""``http_stream``: an answer read as it arrives (a Bulk Data NDJSON file), on the same rules as
``http_request``, against a real server on 127.0.0.1. The stand-in counts what it sent, so a test can tell a
body read piece by piece from one read whole."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from clinical_ai.core.http import HttpFailure, http_stream
from tests.stand_in import loopback_server

LINE = b'{"resourceType":"Observation","id":"obs"}\n'
FILE_LINES = 2000  # about 84 KB: more than one 64 KiB read
BIG = 1024 * 1024


@dataclass
class StandIn:
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

        def _send(self, data: bytes) -> None:
            self.wfile.write(data)
            self.wfile.flush()
            state.bytes_sent += len(data)

        def do_GET(self) -> None:
            state.seen.append((self.command, self.path, self.headers.get("Authorization", "")))
            body = LINE * FILE_LINES
            try:
                if self.path == "/file":
                    self._head(
                        200, {"Content-Type": "application/fhir+ndjson", "Content-Length": str(len(body))}
                    )
                    self._send(body)
                elif self.path == "/chunked":
                    self._head(
                        200, {"Content-Type": "application/fhir+ndjson", "Transfer-Encoding": "chunked"}
                    )
                    for start in range(0, len(body), 5000):
                        piece = body[start : start + 5000]
                        self._send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    self._send(b"0\r\n\r\n")
                elif self.path == "/dropped":
                    # Declares the whole file, sends a third of it, then hangs up.
                    self._head(200, {"Content-Length": str(len(body))})
                    self._send(body[: len(body) // 3])
                    self.close_connection = True
                elif self.path == "/dropped-chunked":
                    self._head(200, {"Transfer-Encoding": "chunked"})
                    self._send(b"1000\r\n" + b"x" * 100)  # a chunk of 4096 announced, 100 bytes sent
                    self.close_connection = True
                elif self.path == "/endless":
                    self._head(200, {"Transfer-Encoding": "chunked"})
                    while not state.stop.is_set():
                        self._send(b"4000\r\n" + b"x" * 0x4000 + b"\r\n")
                elif self.path == "/declared-huge":
                    self._head(200, {"Content-Length": str(100 * BIG)})
                    while not state.stop.is_set():
                        self._send(b"x" * 1024)
                        time.sleep(0.05)
                elif self.path == "/drip":
                    # Each piece well within the read timeout: only the whole-exchange deadline stops it.
                    self._head(200, {"Transfer-Encoding": "chunked"})
                    while not state.stop.is_set():
                        self._send(f"{len(LINE):x}\r\n".encode() + LINE + b"\r\n")
                        time.sleep(0.05)
                elif self.path == "/slow-head":
                    state.stop.wait(5)
                    self._head(200, {"Content-Length": "0"})
                elif self.path == "/stall":
                    self._head(200, {"Content-Length": str(len(body))})
                    self._send(body[:100])
                    state.stop.wait(5)
                elif self.path.startswith("/redirect"):
                    self._head(302, {"Location": f"{state.url}/file", "Content-Length": "0"})
                elif self.path == "/error":
                    raw = b'{"resourceType":"OperationOutcome"}'
                    self._head(500, {"Content-Length": str(len(raw)), "Retry-After": "3"})
                    self._send(raw)
                else:
                    self._head(404, {"Content-Length": "0"})
            except OSError:
                self.close_connection = True  # the client hung up: what some tests want

    return Handler


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    state = StandIn()
    with loopback_server(_handler(state)) as state.url:
        yield state
        state.stop.set()


def _stream(stand_in: StandIn, path: str, *, cap: int = BIG, total: float = 5, timeout: float = 2) -> Any:
    return http_stream(
        "GET",
        f"{stand_in.url}{path}",
        allowed_hosts={"127.0.0.1"},
        timeout_seconds=timeout,
        total_seconds=total,
        max_total_bytes=cap,
        headers={"Authorization": "Bearer tok", "Accept": "application/fhir+ndjson"},
    )


@pytest.mark.parametrize("path", ["/file", "/chunked"])
def test_a_file_arrives_in_pieces_and_whole(stand_in: StandIn, path: str) -> None:
    with _stream(stand_in, path) as stream:
        assert stream.status == 200 and stream.headers["content-type"] == "application/fhir+ndjson"
        pieces = list(stream.chunks())
    assert len(pieces) > 1 and max(len(p) for p in pieces) <= 64 * 1024
    assert b"".join(pieces) == LINE * FILE_LINES
    assert stand_in.seen == [("GET", path, "Bearer tok")]


def test_a_caller_can_stop_early_and_the_connection_is_closed(stand_in: StandIn) -> None:
    with _stream(stand_in, "/endless", cap=100 * BIG) as stream:
        first = next(iter(stream.chunks()))
    assert first
    sent_when_closed = stand_in.bytes_sent
    time.sleep(0.3)
    # The server's writes fail once the socket is gone: at most what the kernel buffers goes after it.
    assert stand_in.bytes_sent - sent_when_closed < 8 * BIG


@pytest.mark.parametrize("path", ["/dropped", "/dropped-chunked"])
def test_a_connection_dropped_mid_body_is_transient(stand_in: StandIn, path: str) -> None:
    received = 0
    with pytest.raises(HttpFailure) as raised, _stream(stand_in, path) as stream:
        for piece in stream.chunks():
            received += len(piece)
    assert not raised.value.permanent and raised.value.status == 200
    assert 0 < received < len(LINE) * FILE_LINES


def test_an_endless_body_is_cut_off_as_soon_as_it_passes_the_cap(stand_in: StandIn) -> None:
    received = 0
    with pytest.raises(HttpFailure) as raised, _stream(stand_in, "/endless", cap=BIG) as stream:
        for piece in stream.chunks():
            received += len(piece)
    assert raised.value.permanent and "larger than" in str(raised.value)
    assert BIG - 64 * 1024 < received <= BIG  # handed over up to the cap, never past it


def test_a_declared_oversized_body_is_refused_before_reading(stand_in: StandIn) -> None:
    started = time.monotonic()
    with pytest.raises(HttpFailure) as raised, _stream(stand_in, "/declared-huge", cap=BIG) as stream:
        list(stream.chunks())
    assert raised.value.permanent and time.monotonic() - started < 2


def test_a_dripping_body_is_cut_off_at_the_whole_exchange_deadline(stand_in: StandIn) -> None:
    started = time.monotonic()
    received = 0
    with pytest.raises(HttpFailure) as raised, _stream(stand_in, "/drip", total=0.6, timeout=2) as stream:
        for piece in stream.chunks():
            received += len(piece)
    assert not raised.value.permanent and "too long" in str(raised.value)
    assert received > 0 and time.monotonic() - started < 3  # the deadline plus at most one read


def test_a_stalled_body_times_out_on_one_read(stand_in: StandIn) -> None:
    started = time.monotonic()
    with pytest.raises(HttpFailure) as raised, _stream(stand_in, "/stall", total=30, timeout=0.3) as stream:
        list(stream.chunks())
    assert not raised.value.permanent and time.monotonic() - started < 2


def test_no_status_line_in_time_is_transient(stand_in: StandIn) -> None:
    with pytest.raises(HttpFailure) as raised, _stream(stand_in, "/slow-head", timeout=0.3):
        pass
    assert not raised.value.permanent and raised.value.status is None


def test_a_redirect_is_never_followed(stand_in: StandIn) -> None:
    with pytest.raises(HttpFailure) as raised, _stream(stand_in, "/redirect"):
        pass
    assert raised.value.permanent and raised.value.status == 302
    assert [path for _, path, _ in stand_in.seen] == ["/redirect"]


def test_a_host_off_the_allowlist_is_refused_before_any_connection(stand_in: StandIn) -> None:
    with (
        pytest.raises(HttpFailure) as raised,
        http_stream(
            "GET",
            f"{stand_in.url}/file",
            allowed_hosts={"ehr.example.org"},
            timeout_seconds=1,
            total_seconds=1,
            max_total_bytes=BIG,
        ),
    ):
        pass
    assert raised.value.permanent and stand_in.seen == []


def test_read_small_reads_an_error_answer_and_refuses_a_big_one(stand_in: StandIn) -> None:
    with _stream(stand_in, "/error") as stream:
        assert stream.status == 500 and stream.headers["retry-after"] == "3"
        assert stream.read_small(4096) == b'{"resourceType":"OperationOutcome"}'
    with pytest.raises(HttpFailure) as raised, _stream(stand_in, "/chunked") as stream:
        stream.read_small(10_000)
    assert raised.value.permanent and "larger than 10000" in str(raised.value)


def test_failure_messages_name_nothing_of_the_request(stand_in: StandIn) -> None:
    messages = []
    for path in ("/dropped", "/endless", "/redirect?patient=pat-123"):
        try:
            with _stream(stand_in, path) as stream:
                list(stream.chunks())
        except HttpFailure as exc:
            messages.append(str(exc))
    assert len(messages) == 3
    for text in messages:
        assert "tok" not in text and "pat-123" not in text and "127.0.0.1" not in text and "/" not in text
