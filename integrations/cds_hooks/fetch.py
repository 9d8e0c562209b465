"""Reading what a hook needs from the EHR's FHIR server (``fhirServer``) with the access token it handed
over (``fhirAuthorization``). Only from a base URL registered for the issuer and only to its host (no
request forgery towards other hosts), over https or loopback http, without redirects, with a short timeout
(clinical_ai.core.http). The token is sent and forgotten: never logged, stored or put into an error
message."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit

from clinical_ai.core.http import LOOPBACK_HOSTS, HttpFailure, http_request, url_host

MAX_RESPONSE_BYTES = 5 * 1024 * 1024


class FetchFailed(Exception):
    """The FHIR server could not give the resource (unreachable, refused, not FHIR)."""


def fhir_server_usable(fhir_server: str, *, allowed: Sequence[str]) -> bool:
    """Whether ``fhir_server`` is one of the registered base URLs and safe to call."""
    normalized = fhir_server.rstrip("/")
    if normalized not in {str(url).rstrip("/") for url in allowed}:
        return False
    try:
        parts = urlsplit(normalized)
    except ValueError:
        return False
    if parts.username or parts.password or not parts.hostname:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS)


def _get_document(
    url: str, *, fhir_server: str, access_token: str, timeout_seconds: float
) -> dict[str, Any] | None:
    """GET one URL on the fhirServer's host (a rendered path or a checked next link): the FHIR resource,
    None for a 404/410, ``FetchFailed`` otherwise."""
    try:
        reply = http_request(
            "GET",
            url,
            # The rendered path comes from the request's context: it must not lead off the server's host.
            allowed_hosts={url_host(fhir_server)},
            timeout_seconds=timeout_seconds,
            max_response_bytes=MAX_RESPONSE_BYTES,
            headers={
                "Accept": "application/fhir+json",
                "Authorization": f"Bearer {access_token}",
                "User-Agent": "clinical-ai-cds-hooks",
            },
        )
    except HttpFailure as failure:  # its message names no URL, header or body
        raise FetchFailed(f"the FHIR server: {failure}") from None
    if reply.status in (404, 410):
        return None
    if not reply.ok:
        raise FetchFailed(f"the FHIR server answered HTTP {reply.status}")
    try:
        document = json.loads(reply.body)
    except ValueError:
        raise FetchFailed("the FHIR server did not answer with JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("resourceType"), str):
        raise FetchFailed("the FHIR server did not answer with a FHIR resource")
    return document


def fhir_get(
    *, fhir_server: str, path: str, access_token: str, timeout_seconds: float
) -> dict[str, Any] | None:
    """GET ``[fhirServer]/[path]``; the resource or Bundle, None for a 404/410, ``FetchFailed`` otherwise."""
    base = fhir_server.rstrip("/")
    return _get_document(
        f"{base}/{path.lstrip('/')}",
        fhir_server=base,
        access_token=access_token,
        timeout_seconds=timeout_seconds,
    )


def bundle_resources(document: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The resources a read gave: a Bundle's entries' resources (no nested Bundles, no OperationOutcomes),
    or the resource itself; none for None or an OperationOutcome."""
    if document is None:
        return []
    if document.get("resourceType") != "Bundle":
        return [dict(document)] if document.get("resourceType") != "OperationOutcome" else []
    entries = document.get("entry") if isinstance(document.get("entry"), list) else []
    assert isinstance(entries, list)
    return [
        dict(entry["resource"])
        for entry in entries
        if isinstance(entry, Mapping)
        and isinstance(entry.get("resource"), Mapping)
        and entry["resource"].get("resourceType") not in (None, "Bundle", "OperationOutcome")
    ]


# --- paged reads ------------------------------------------------------------------------------------------

# Why paging stopped before the last page (``PagedRead.stopped``); "" when every page was read.
STOP_PAGE_LIMIT = "page-limit"
STOP_RESOURCE_LIMIT = "resource-limit"
STOP_TIME_LIMIT = "time-limit"
STOP_NEXT_LINK_REFUSED = "next-link-refused"  # to another host, scheme or port, or not under the fhirServer
STOP_NEXT_LINK_REPEATED = "next-link-repeated"  # a page linking back to one already read
STOP_PAGE_FAILED = "page-failed"  # a later page could not be read: what was read is kept


@dataclass(frozen=True)
class FetchLimits:
    """How far one paged read may go: pages (the first included) and resources kept, each request's own
    timeout. The time for all reads of one hook call together is a shared ``Deadline``."""

    max_pages: int
    max_resources: int
    request_timeout_seconds: float


class Deadline:
    """A point in time (monotonic clock) that several reads share: a hook call's whole fetch budget."""

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())


@dataclass(frozen=True)
class PagedRead:
    """One read, every page of it that the limits allowed. ``document``: the resource, or one searchset
    Bundle holding the entries of every page read (no links); None for a 404/410. ``total``: the server's
    ``Bundle.total`` when it gave one. ``stopped``: why paging stopped early ("" when nothing was left
    unread; one of the ``STOP_*`` codes otherwise); ``detail`` says it in words (no URL, no id)."""

    document: dict[str, Any] | None
    pages: int
    resources: int
    total: int | None = None
    stopped: str = ""
    detail: str = ""

    @property
    def truncated(self) -> bool:
        return bool(self.stopped)


def _effective_port(parts: SplitResult) -> int | None:
    try:
        return parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    except ValueError:
        return None


def next_link_allowed(next_url: str, *, fhir_server: str) -> str | None:
    """The absolute URL of a ``Bundle.link[next]`` when it may be followed: same scheme, host and port as
    the registered fhirServer, a path under the fhirServer's own, no credentials, no dot segments (plain or
    percent-encoded); None otherwise. A relative link is read against the fhirServer's base."""
    base = fhir_server.rstrip("/")
    try:
        absolute = urljoin(base + "/", next_url.strip())
        parts, home = urlsplit(absolute), urlsplit(base)
    except ValueError:
        return None
    if (
        parts.scheme != home.scheme
        or (parts.hostname or "").lower() != (home.hostname or "").lower()
        or _effective_port(parts) != _effective_port(home)
        or _effective_port(parts) is None
        or parts.username is not None
        or parts.password is not None
    ):
        return None
    lowered = parts.path.lower()
    if "\\" in parts.path or "%2e" in lowered or "%2f" in lowered or "%5c" in lowered:
        return None
    if any(segment in (".", "..") for segment in parts.path.split("/")):
        return None
    home_path = home.path.rstrip("/")
    if parts.path.rstrip("/") != home_path and not parts.path.startswith(home_path + "/"):
        return None
    return absolute


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    links = bundle.get("link")
    if not isinstance(links, list):
        return None
    for link in links:
        if isinstance(link, Mapping) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


def _is_searchset(document: Mapping[str, Any]) -> bool:
    return document.get("resourceType") == "Bundle" and document.get("type") == "searchset"


def _entries(bundle: Mapping[str, Any]) -> list[Any]:
    entries = bundle.get("entry")
    return list(entries) if isinstance(entries, list) else []


def fhir_get_paged(
    *, fhir_server: str, path: str, access_token: str, limits: FetchLimits, deadline: Deadline
) -> PagedRead:
    """GET ``[fhirServer]/[path]`` and, for a searchset Bundle, its ``next`` pages within ``limits`` and
    ``deadline``, merged into one searchset Bundle.

    The first page is ``fhir_get``: a failure there raises ``FetchFailed`` (or None for 404/410). A later
    page that fails (an error status, a timeout, not a searchset) stops paging and keeps what was read,
    reported as ``page-failed``: the pages already read are the server's own answer, newest first for the
    searches the services send, and a truncated read is said to be one (``stopped``) rather than lost."""
    remaining = deadline.remaining()
    if remaining <= 0:
        raise FetchFailed("the time for reading from the FHIR server is spent")
    first = fhir_get(
        fhir_server=fhir_server,
        path=path,
        access_token=access_token,
        timeout_seconds=min(limits.request_timeout_seconds, remaining),
    )
    if first is None:
        return PagedRead(None, pages=1, resources=0)
    if not _is_searchset(first):
        return PagedRead(
            first, pages=1, resources=len(_entries(first)) if first["resourceType"] == "Bundle" else 1
        )
    total = first.get("total") if isinstance(first.get("total"), int) else None
    entries = _entries(first)
    pages, stopped, detail = 1, "", ""
    seen: set[str] = set()
    link = _next_link(first)
    while link is not None:
        if len(entries) >= limits.max_resources:
            stopped, detail = STOP_RESOURCE_LIMIT, f"more than {limits.max_resources} resources"
            break
        if pages >= limits.max_pages:
            stopped, detail = STOP_PAGE_LIMIT, f"more than {limits.max_pages} pages"
            break
        target = next_link_allowed(link, fhir_server=fhir_server)
        if target is None:
            stopped, detail = STOP_NEXT_LINK_REFUSED, "the next page is not under the registered fhirServer"
            break
        if target in seen:
            stopped, detail = STOP_NEXT_LINK_REPEATED, "the next page links back to a page already read"
            break
        seen.add(target)
        remaining = deadline.remaining()
        if remaining <= 0:
            stopped, detail = STOP_TIME_LIMIT, "the time for reading from the FHIR server is spent"
            break
        try:
            page = _page_get(
                target, fhir_server, access_token, min(limits.request_timeout_seconds, remaining)
            )
        except FetchFailed as failed:
            if deadline.remaining() <= 0:
                stopped, detail = STOP_TIME_LIMIT, "the time for reading from the FHIR server is spent"
            else:
                stopped, detail = STOP_PAGE_FAILED, f"page {pages + 1}: {failed}"
            break
        pages += 1
        entries.extend(_entries(page))
        link = _next_link(page)
    if len(entries) > limits.max_resources:
        entries = entries[: limits.max_resources]
        stopped, detail = STOP_RESOURCE_LIMIT, f"more than {limits.max_resources} resources"
    merged: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
    if total is not None:
        merged["total"] = total
    return PagedRead(merged, pages=pages, resources=len(entries), total=total, stopped=stopped, detail=detail)


def _page_get(url: str, fhir_server: str, access_token: str, timeout_seconds: float) -> dict[str, Any]:
    """One next page (an absolute URL already checked by ``next_link_allowed``): a searchset Bundle, else
    ``FetchFailed`` (a 404 included: a page announced and then gone)."""
    document = _get_document(
        url, fhir_server=fhir_server, access_token=access_token, timeout_seconds=timeout_seconds
    )
    if document is None or not _is_searchset(document):
        raise FetchFailed("the FHIR server did not answer with a searchset Bundle")
    return document
