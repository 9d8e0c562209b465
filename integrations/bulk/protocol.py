"""The FHIR Bulk Data Access IG 2.0 client side: the gateway asking an EHR for ``$export`` as a SMART
Backend Services client. Plain Python (no models, no settings: callers pass everything), every request
through ``clinical_ai.core.http``.

The steps, each one call, so that the export driver can keep its place in a row between them:

1. ``access_token_get`` (the token URL from ``token_endpoint_discover`` when the source gives none):
   client_credentials with a signed client assertion (private_key_jwt, RS384 or ES384), as
   ``integrations.fhir.client`` already does it for the EHR side;
2. ``export_kickoff``: ``Prefer: respond-async``; the answer is 202 with the status URL in
   ``Content-Location``;
3. ``export_poll``: 202 with ``Retry-After`` and ``X-Progress`` while the EHR works, then 200 with the
   manifest; every file it names must be on the FHIR server's host or one the operator listed
   (``file_hosts``), else the export is refused: a manifest must not send us, with our token, elsewhere;
4. ``file_stream`` for each file (NDJSON, read as it arrives, never whole; ``Range`` to resume);
   ``error_file_reasons`` for the error files;
5. ``export_delete``.

Failures come in two kinds, as everywhere in this project: ``BulkTransient`` (worth trying later: 429,
the retryable 5xx, timeouts, a dropped connection; with the server's Retry-After when it gave one) and
``BulkRefused`` (the EHR said no, or broke the protocol). Neither message ever carries a token, a URL (paths
and queries name groups and patients) or an OperationOutcome's diagnostics text (which may name a patient):
only HTTP statuses and FHIR issue codes.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode, urljoin

from clinical_ai.core.http import (
    TRANSIENT_STATUSES,
    HttpFailure,
    HttpReply,
    HttpStream,
    http_request,
    http_stream,
    retry_after_seconds,
    url_check,
    url_host,
)
from clinical_ai.fhir.dates import FhirDateError, fhir_instant_text, parse_fhir_date_time
from clinical_ai.fhir.ndjson import lines_split
from clinical_ai.fhir.resource_types import is_r4_resource_type
from integrations.fhir.client import ClientError, access_token_of, token_request

# A manifest lists one entry per file: thousands of files fit well within this.
MANIFEST_MAX_BYTES = 16 * 1024 * 1024
# Error answers, smart-configuration, token answers: small documents.
ANSWER_MAX_BYTES = 1024 * 1024
# A line of an error file longer than this is counted as unreadable rather than held in memory.
ERROR_LINE_MAX_BYTES = 1024 * 1024
PROGRESS_MAX_CHARS = 200
# When a token answer gives no expires_in (RFC 6749 leaves it optional; SMART asks for it).
TOKEN_DEFAULT_SECONDS = 300
LEVELS = ("system", "patient", "group")
NDJSON = "application/fhir+ndjson"
# IssueType codes under "transient" (https://hl7.org/fhir/R4/valueset-issue-type.html): a failure that a
# later poll may not see. The Bulk Data IG asks servers to use these for a poll failure that is not the job's.
TRANSIENT_ISSUE_CODES = frozenset(
    {"transient", "lock-error", "no-store", "exception", "timeout", "incomplete", "throttled"}
)
_CODE = re.compile(r"[a-z][a-z0-9-]{0,63}", re.ASCII)
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.ASCII)
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)", re.ASCII)


class BulkTransient(Exception):
    """Worth trying later: the EHR is busy (429, the retryable 5xx, a transient OperationOutcome), did not
    answer in time, or the connection dropped. ``retry_after``: the server's Retry-After in seconds."""

    def __init__(self, message: str, *, retry_after: int | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class BulkRefused(Exception):
    """Permanent: the EHR refused (with its status and issue codes) or broke the protocol. ``reason`` is
    safe to store and show: no URL, no token, no diagnostics text."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class BulkEndpoint:
    """Where one EHR's FHIR server is, and which hosts its manifests may send us to."""

    base_url: str  # FHIR base, no trailing slash
    file_hosts: frozenset[str] = frozenset()  # hosts besides base_url's the manifest may name
    timeout_seconds: float = 30.0
    allow_plain_http: bool = False  # loopback http is always allowed by core.http

    @property
    def hosts(self) -> frozenset[str]:
        return frozenset({url_host(self.base_url), *(h.lower() for h in self.file_hosts)})


@dataclass(frozen=True)
class AccessToken:
    value: str
    expires_at: float  # time.time() seconds


@dataclass(frozen=True)
class InProgress:
    retry_after: int | None
    progress: str  # the EHR's X-Progress, as given (cut to 200 characters)


@dataclass(frozen=True)
class ManifestFile:
    type: str
    url: str
    count: int | None


@dataclass(frozen=True)
class Manifest:
    transaction_time: datetime
    requires_access_token: bool
    output: tuple[ManifestFile, ...]
    error: tuple[ManifestFile, ...]
    # IG 2.0 ``deleted``: NDJSON Bundles of DELETE entries for resources removed since ``_since``.
    deleted: tuple[ManifestFile, ...] = ()


# --- answers --------------------------------------------------------------------------------------------


def _issue_codes(body: bytes) -> list[str]:
    """The issue codes of an OperationOutcome body, each checked to look like a code (never the text)."""
    try:
        document = json.loads(body)
    except ValueError:
        return []
    if not isinstance(document, dict) or document.get("resourceType") != "OperationOutcome":
        return []
    codes = []
    for issue in document.get("issue") or ():
        code = issue.get("code") if isinstance(issue, dict) else None
        codes.append(code if isinstance(code, str) and _CODE.fullmatch(code) else "unknown")
    return codes


def _refusal_or_transient(what: str, status: int, headers: Mapping[str, str], body: bytes) -> Exception:
    """The exception for a non-success answer to ``what``: transient for 429 and the retryable 5xx unless
    the OperationOutcome says the failure is final; refused otherwise."""
    codes = _issue_codes(body)
    described = f"HTTP {status}" + (f"; issue codes: {', '.join(sorted(set(codes)))}" if codes else "")
    final = bool(codes) and not set(codes) <= TRANSIENT_ISSUE_CODES and status not in (429, 503)
    if status in TRANSIENT_STATUSES and not final:
        return BulkTransient(
            f"{what}: the EHR is busy or failing ({described})",
            retry_after=retry_after_seconds(headers.get("retry-after", "")),
            status=status,
        )
    return BulkRefused(f"{what}: the EHR refused ({described})", status=status)


def _from_http_failure(what: str, failure: HttpFailure) -> Exception:
    if failure.permanent:
        return BulkRefused(f"{what}: {failure}", status=failure.status)
    return BulkTransient(f"{what}: {failure}", retry_after=failure.retry_after, status=failure.status)


def _request(
    endpoint: BulkEndpoint,
    what: str,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    max_bytes: int = ANSWER_MAX_BYTES,
) -> HttpReply:
    try:
        return http_request(
            method,
            url,
            allowed_hosts=endpoint.hosts,
            timeout_seconds=endpoint.timeout_seconds,
            max_response_bytes=max_bytes,
            headers=headers,
            allow_plain_http=endpoint.allow_plain_http,
        )
    except HttpFailure as failure:
        raise _from_http_failure(what, failure) from None


def _json_object(what: str, reply: HttpReply) -> dict[str, Any]:
    try:
        document = json.loads(reply.body)
    except ValueError:
        raise BulkRefused(f"{what}: the answer is not JSON", status=reply.status) from None
    if not isinstance(document, dict):
        raise BulkRefused(f"{what}: the answer is not a JSON object", status=reply.status)
    return document


def _url_on_endpoint(endpoint: BulkEndpoint, url: str, what: str) -> None:
    try:
        url_check(url, allowed_hosts=endpoint.hosts, allow_plain_http=endpoint.allow_plain_http, what=what)
    except HttpFailure as failure:
        raise BulkRefused(str(failure)) from None


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- token ----------------------------------------------------------------------------------------------


def token_endpoint_discover(endpoint: BulkEndpoint) -> str:
    """The token URL from ``[base]/.well-known/smart-configuration``. It must be on the FHIR server's host
    or a listed one: a token endpoint elsewhere is registered on the source explicitly instead."""
    what = "SMART configuration"
    reply = _request(
        endpoint,
        what,
        "GET",
        f"{endpoint.base_url}/.well-known/smart-configuration",
        headers={"Accept": "application/json"},
    )
    if reply.status != 200:
        raise _refusal_or_transient(what, reply.status, reply.headers, reply.body)
    token_url = _json_object(what, reply).get("token_endpoint")
    if not isinstance(token_url, str) or not token_url:
        raise BulkRefused(f"{what}: no token_endpoint", status=reply.status)
    _url_on_endpoint(endpoint, token_url, "the token endpoint of the SMART configuration")
    return token_url


def access_token_get(
    endpoint: BulkEndpoint,
    *,
    token_url: str,
    client_id: str,
    private_key_pem: bytes,
    key_id: str,
    scopes: str,
) -> AccessToken:
    """An access token for SMART Backend Services (client_credentials, private_key_jwt). A refusal (400 or
    401: the EHR does not know the client, its key or the scopes) is ``BulkRefused`` with the OAuth error
    code only."""
    what = "token request"
    requested_at = time.time()
    try:
        reply = token_request(
            token_url=token_url,
            client_id=client_id,
            private_key_pem=private_key_pem,
            kid=key_id,
            scope=scopes,
            timeout=endpoint.timeout_seconds,
            allow_plain_http=endpoint.allow_plain_http,
        )
    except HttpFailure as failure:
        raise _from_http_failure(what, failure) from None
    except (ClientError, ValueError, TypeError):
        raise BulkRefused(f"{what}: the private key is not an RSA or EC P-384 PEM key") from None
    token = access_token_of(reply)
    if token is None:
        if reply.status in TRANSIENT_STATUSES:
            raise BulkTransient(
                f"{what}: the EHR is busy or failing (HTTP {reply.status})",
                retry_after=reply.retry_after,
                status=reply.status,
            )
        error = ""
        try:
            document = json.loads(reply.body)
            if isinstance(document, dict) and isinstance(document.get("error"), str):
                error = document["error"] if _CODE.fullmatch(document["error"].replace("_", "-")) else ""
        except ValueError:
            pass
        detail = f"HTTP {reply.status}" + (f", {error}" if error else "")
        raise BulkRefused(f"{what}: the EHR refused the client ({detail})", status=reply.status)
    lifetime = _json_object(what, reply).get("expires_in")
    seconds = lifetime if isinstance(lifetime, int) and lifetime > 0 else TOKEN_DEFAULT_SECONDS
    return AccessToken(value=token, expires_at=requested_at + seconds)


# --- export ---------------------------------------------------------------------------------------------


def export_url(
    endpoint: BulkEndpoint,
    *,
    level: str,
    group_id: str = "",
    types: Sequence[str] = (),
    type_filters: Sequence[str] = (),
    since: datetime | None = None,
) -> str:
    """The kick-off URL for ``level`` (system, patient or group) with its parameters."""
    if level == "system":
        path = "/$export"
    elif level == "patient":
        path = "/Patient/$export"
    elif level == "group" and group_id:
        path = f"/Group/{quote(group_id, safe='')}/$export"
    else:
        raise BulkRefused(f"export level {level!r} is not one of {', '.join(LEVELS)} (a group needs its id)")
    query: list[tuple[str, str]] = [("_outputFormat", NDJSON)]
    if types:
        query.append(("_type", ",".join(types)))
    if since is not None:
        try:
            query.append(("_since", fhir_instant_text(since)))
        except FhirDateError:
            raise BulkRefused("_since must be a timezone-aware datetime") from None
    # Each filter is a query of its own ("MedicationRequest?status=active,completed"): repeated, not joined.
    query.extend(("_typeFilter", type_filter) for type_filter in type_filters)
    return f"{endpoint.base_url}{path}?{urlencode(query)}"


def export_kickoff(
    endpoint: BulkEndpoint,
    token: str,
    *,
    level: str,
    group_id: str = "",
    types: Sequence[str] = (),
    type_filters: Sequence[str] = (),
    since: datetime | None = None,
) -> str:
    """Ask for an export; the status URL (``Content-Location`` of the 202), on the EHR's host."""
    what = "export kick-off"
    url = export_url(
        endpoint, level=level, group_id=group_id, types=types, type_filters=type_filters, since=since
    )
    reply = _request(
        endpoint,
        what,
        "GET",
        url,
        headers={"Accept": "application/fhir+json", "Prefer": "respond-async", **_bearer(token)},
    )
    if reply.status != 202:
        if 200 <= reply.status < 300:
            raise BulkRefused(f"{what}: HTTP {reply.status} where the IG requires 202", status=reply.status)
        raise _refusal_or_transient(what, reply.status, reply.headers, reply.body)
    location = reply.headers.get("content-location", "").strip()
    if not location:
        raise BulkRefused(f"{what}: the 202 has no Content-Location", status=202)
    status_url = urljoin(url, location)
    _url_on_endpoint(endpoint, status_url, "the status URL of the kick-off answer")
    return status_url


def _manifest_files(endpoint: BulkEndpoint, entries: object, field: str) -> tuple[ManifestFile, ...]:
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise BulkRefused(f"manifest: {field} is not a list", status=200)
    files = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise BulkRefused(f"manifest: an entry of {field} is not an object", status=200)
        resource_type, url, count = entry.get("type"), entry.get("url"), entry.get("count")
        if field == "deleted" and resource_type is None:
            resource_type = "Bundle"  # what a deleted file holds; some manifests leave the type out
        if not isinstance(resource_type, str) or not resource_type or not isinstance(url, str) or not url:
            raise BulkRefused(f"manifest: an entry of {field} lacks its type or url", status=200)
        if url_host(url) not in endpoint.hosts:
            raise BulkRefused(
                "manifest names a file on a host other than the FHIR server's and its listed file hosts",
                status=200,
            )
        _url_on_endpoint(endpoint, url, f"a file URL of the manifest ({field})")
        files.append(
            ManifestFile(
                type=resource_type,
                url=url,
                count=count if isinstance(count, int) and not isinstance(count, bool) else None,
            )
        )
    return tuple(files)


def manifest_parse(endpoint: BulkEndpoint, body: bytes) -> Manifest:
    """The completion manifest, checked: a transactionTime instant, and every file with its type and a URL
    on the endpoint's hosts. Raises ``BulkRefused``."""
    try:
        document = json.loads(body)
    except ValueError:
        raise BulkRefused("manifest: not JSON", status=200) from None
    if not isinstance(document, dict):
        raise BulkRefused("manifest: not a JSON object", status=200)
    raw_time = document.get("transactionTime")
    try:
        read = parse_fhir_date_time(raw_time) if isinstance(raw_time, str) else None
    except FhirDateError:
        read = None
    if read is None or not read.zoned or read.precision not in ("second", "fraction"):
        raise BulkRefused("manifest: transactionTime is not a FHIR instant", status=200)
    if not isinstance(document.get("output"), list):
        raise BulkRefused("manifest: no output list", status=200)
    output = _manifest_files(endpoint, document["output"], "output")
    requires = document.get("requiresAccessToken")
    if not isinstance(requires, bool):
        raise BulkRefused("manifest: requiresAccessToken is not true or false", status=200)
    return Manifest(
        transaction_time=read.start,
        requires_access_token=requires,
        output=output,
        error=_manifest_files(endpoint, document.get("error"), "error"),
        deleted=_manifest_files(endpoint, document.get("deleted"), "deleted"),
    )


def export_poll(endpoint: BulkEndpoint, token: str, status_url: str) -> InProgress | Manifest:
    """One poll of the status URL: ``InProgress`` (with the server's Retry-After and X-Progress) or the
    checked ``Manifest``. Raises ``BulkTransient`` (429, transient 5xx, timeouts) or ``BulkRefused`` (the
    export failed, the job is gone, a manifest that breaks the rules)."""
    what = "export status"
    _url_on_endpoint(endpoint, status_url, "the status URL")
    reply = _request(
        endpoint,
        what,
        "GET",
        status_url,
        headers={"Accept": "application/json", **_bearer(token)},
        max_bytes=MANIFEST_MAX_BYTES,
    )
    if reply.status == 202:
        progress = reply.headers.get("x-progress", "")
        return InProgress(retry_after=reply.retry_after, progress=progress[:PROGRESS_MAX_CHARS])
    if reply.status == 200:
        return manifest_parse(endpoint, reply.body)
    raise _refusal_or_transient(what, reply.status, reply.headers, reply.body)


def export_delete(endpoint: BulkEndpoint, token: str, status_url: str) -> bool:
    """Ask the EHR to delete the job and its files (on completion or cancel). Best effort: True when it
    accepted or the job is already gone, False on any failure (never raises: nothing depends on it)."""
    try:
        _url_on_endpoint(endpoint, status_url, "the status URL")
        reply = _request(
            endpoint,
            "export delete",
            "DELETE",
            status_url,
            headers={"Accept": "application/json", **_bearer(token)},
        )
    except (BulkRefused, BulkTransient):
        return False
    return reply.status in (200, 202, 204, 404, 410)


# --- files ----------------------------------------------------------------------------------------------


class FileStream:
    """One NDJSON file as it arrives. ``resumed_at``: the byte offset the server honoured (``start_byte``
    when it answered 206 with that range, else 0: the body starts at the file's first byte and the caller
    skips what it already has)."""

    def __init__(self, stream: HttpStream | None, *, resumed_at: int, max_bytes: int) -> None:
        self._stream = stream
        self.resumed_at = resumed_at
        self.status = stream.status if stream is not None else 416
        self._max_bytes = max_bytes
        self.bytes_read = 0

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes from ``resumed_at``. Raises ``BulkTransient`` on a dropped connection, a timeout
        or the download deadline (resume with Range), ``BulkRefused`` once the file passes ``max_bytes``."""
        if self._stream is None:
            return
        try:
            for chunk in self._stream.chunks():
                self.bytes_read += len(chunk)
                if self.resumed_at + self.bytes_read > self._max_bytes:
                    raise BulkRefused(
                        f"file download: the file is larger than {self._max_bytes} bytes", status=self.status
                    )
                yield chunk
        except HttpFailure as failure:
            raise _from_http_failure("file download", failure) from None


def _range_honoured(stream: HttpStream, start_byte: int) -> bool:
    if stream.status != 206:
        return False
    match = _CONTENT_RANGE.fullmatch(stream.headers.get("content-range", "").strip())
    if match is None or int(match[1]) != start_byte:
        raise BulkRefused(
            "file download: a partial answer that does not start where it was asked to", status=206
        )
    return True


def _file_open(stream: HttpStream, *, start_byte: int, max_bytes: int) -> FileStream:
    if stream.status in (200, 206):
        resumed_at = start_byte if _range_honoured(stream, start_byte) else 0
        return FileStream(stream, resumed_at=resumed_at, max_bytes=max_bytes)
    if stream.status == 416 and start_byte > 0:
        # Asked from past the end: when the file is exactly start_byte long, everything was already read.
        total = _UNSATISFIED_RANGE.fullmatch(stream.headers.get("content-range", "").strip())
        if total is not None and int(total[1]) == start_byte:
            return FileStream(None, resumed_at=start_byte, max_bytes=max_bytes)
    body = stream.read_small(ANSWER_MAX_BYTES)
    raise _refusal_or_transient("file download", stream.status, stream.headers, body)


@contextmanager
def file_stream(
    endpoint: BulkEndpoint,
    token: str | None,
    url: str,
    *,
    max_bytes: int,
    total_seconds: float,
    start_byte: int = 0,
) -> Iterator[FileStream]:
    """Open one file of the manifest. ``token``: the access token when the manifest says
    ``requiresAccessToken``, else None (then no Authorization header is sent: the URL is a signed one, and a
    storage service has no business seeing our token). ``start_byte`` > 0 asks for ``Range: bytes=N-``;
    ``max_bytes`` caps the whole file (``total_seconds`` this one download). Raises ``BulkTransient`` or
    ``BulkRefused`` on opening (401/403 are refused: a caller may get a fresh token and try once more) and
    from ``FileStream.chunks``."""
    _url_on_endpoint(endpoint, url, "a file URL")
    headers = {"Accept": NDJSON}
    if token is not None:
        headers.update(_bearer(token))
    if start_byte > 0:
        headers["Range"] = f"bytes={start_byte}-"
    with ExitStack() as stack:
        try:
            stream = stack.enter_context(
                http_stream(
                    "GET",
                    url,
                    allowed_hosts=endpoint.hosts,
                    timeout_seconds=endpoint.timeout_seconds,
                    total_seconds=total_seconds,
                    max_total_bytes=max_bytes,
                    headers=headers,
                    allow_plain_http=endpoint.allow_plain_http,
                )
            )
            opened = _file_open(stream, start_byte=start_byte, max_bytes=max_bytes)
        except HttpFailure as failure:
            raise _from_http_failure("file download", failure) from None
        yield opened


def error_file_reasons(
    chunks: Iterable[bytes], *, max_line_bytes: int = ERROR_LINE_MAX_BYTES
) -> dict[str, int]:
    """An error file (NDJSON of OperationOutcome) counted by issue code: each line counts once for each
    distinct code of its issues. A line that is not an OperationOutcome counts as "unreadable". The
    diagnostics text is never read: it may name a patient."""
    reasons: dict[str, int] = {}
    for line in lines_split(chunks, max_line_bytes=max_line_bytes):
        if line.blank:
            continue
        codes = set(_issue_codes(line.data)) if not line.too_long else set()
        for code in codes or {"unreadable"}:
            reasons[code] = reasons.get(code, 0) + 1
    return reasons


@dataclass(frozen=True)
class DeletedLine:
    """One line of a ``deleted`` file: the resources it says were deleted at the EHR, as (type, id); none
    when the line is not a Bundle of DELETE entries naming ``Type/id`` (``unreadable``)."""

    number: int
    references: tuple[tuple[str, str], ...]

    @property
    def unreadable(self) -> bool:
        return not self.references


_DELETED_URL = re.compile(r"(?:.*/)?([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})/?")


def _deleted_references(data: bytes) -> tuple[tuple[str, str], ...]:
    try:
        bundle = json.loads(data)
    except ValueError:
        return ()
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return ()
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return ()
    found: list[tuple[str, str]] = []
    for entry in entries:
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict) or request.get("method") != "DELETE":
            return ()
        url = request.get("url")
        match = _DELETED_URL.fullmatch(url.split("?", 1)[0]) if isinstance(url, str) else None
        if match is None or not is_r4_resource_type(match[1]):
            return ()
        found.append((match[1], match[2]))
    return tuple(found)


def deleted_file_lines(
    chunks: Iterable[bytes], *, max_line_bytes: int = ERROR_LINE_MAX_BYTES
) -> Iterator[DeletedLine]:
    """The lines of a ``deleted`` file (IG 2.0: each a transaction Bundle whose entries have
    ``request.method`` DELETE and ``request.url`` ``Type/id``), as they stream in. A line is taken whole or
    not at all: one entry that is not such a DELETE makes the line unreadable."""
    for line in lines_split(chunks, max_line_bytes=max_line_bytes):
        if line.blank:
            continue
        yield DeletedLine(line.number, () if line.too_long else _deleted_references(line.data))
