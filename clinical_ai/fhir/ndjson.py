"""FHIR NDJSON (Bulk Data files, ``application/fhir+ndjson``): lines out of a stream of byte chunks, each line
to a resource or the reason it is refused, and the version marker by which a resource already stored is
recognised. Plain Python, no Django.

A file is never held whole: ``lines_split`` keeps at most one line (up to its cap) in memory, and a longer
line is reported as too long and skipped to its end without being kept. Every refusal reason is a fixed
word, never the line's content (a line may hold a patient's record).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from clinical_ai.fhir import resource_types
from clinical_ai.fhir.outcome import FhirError
from clinical_ai.fhir.validation_body import UTF8_BOM, Limits, parse_json_body
from clinical_ai.fhir.validation_resource import check_resource

# Why a line was refused: the words an operator sees counted in the batch.
NOT_JSON: Final = "not_json"
NOT_AN_OBJECT: Final = "not_an_object"
NO_RESOURCE_TYPE: Final = "no_resource_type"
UNKNOWN_RESOURCE_TYPE: Final = "unknown_resource_type"
INVALID: Final = "invalid"
NO_ID: Final = "no_id"
TOO_LONG: Final = "too_long"
REFUSAL_REASONS: Final = (
    NOT_JSON,
    NOT_AN_OBJECT,
    NO_RESOURCE_TYPE,
    UNKNOWN_RESOURCE_TYPE,
    INVALID,
    NO_ID,
    TOO_LONG,
)

NDJSON_MEDIA_TYPE: Final = "application/fhir+ndjson"

_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_NEWLINE = b"\n"


@dataclass(frozen=True)
class Line:
    """One line of the stream. ``number`` counts from 1; ``end`` is the byte offset just past the line's
    terminator (where the next line starts). A too long line has no ``data``."""

    number: int
    data: bytes
    end: int
    too_long: bool = False

    @property
    def blank(self) -> bool:
        return not self.too_long and not self.data.strip()


def _line_data(data: bytes, number: int) -> bytes:
    if data.endswith(b"\r"):
        data = data[:-1]
    if number == 1 and data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM) :]
    return data


def lines_split(chunks: Iterable[bytes], *, max_line_bytes: int) -> Iterator[Line]:
    """The lines of a stream of byte chunks, terminators (``\\n`` or ``\\r\\n``) removed, blank lines
    included (so that line numbers are those of the file), the last line with or without a newline. A
    leading UTF-8 byte order mark is dropped. A line longer than ``max_line_bytes`` is yielded once as
    ``too_long`` (without its data) when its end is reached; its bytes are never kept."""
    pending = bytearray()
    skipping = False  # inside a line already known to be too long
    number = 0
    offset = 0  # bytes consumed so far
    for chunk in chunks:
        if not chunk:
            continue
        start = 0
        size = len(chunk)
        while start < size:
            newline = chunk.find(_NEWLINE, start)
            if newline < 0:
                if not skipping:
                    pending += chunk[start:]
                    if len(pending) > max_line_bytes + 1:  # +1: the \r of a \r\n may be in it
                        pending.clear()
                        skipping = True
                offset += size - start
                break
            offset += newline + 1 - start
            number += 1
            if skipping:
                skipping = False
                yield Line(number, b"", offset, too_long=True)
            else:
                if pending:
                    pending += chunk[start:newline]
                    data = bytes(pending)
                    pending.clear()
                else:
                    data = chunk[start:newline]
                data = _line_data(data, number)
                if len(data) > max_line_bytes:
                    yield Line(number, b"", offset, too_long=True)
                else:
                    yield Line(number, data, offset)
            start = newline + 1
    if skipping:
        yield Line(number + 1, b"", offset, too_long=True)
    elif pending:
        data = _line_data(bytes(pending), number + 1)
        if len(data) > max_line_bytes:
            yield Line(number + 1, b"", offset, too_long=True)
        else:
            yield Line(number + 1, data, offset)


@dataclass(frozen=True)
class ParsedLine:
    """A line's resource, or the reason (one of ``REFUSAL_REASONS``) it is refused."""

    resource: dict[str, Any] | None
    reason: str = ""


def _not_an_object(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def line_decode(data: bytes, *, max_nesting_depth: int = 64) -> ParsedLine:
    """The cheap half of ``line_parse``: FHIR JSON (UTF-8, no duplicate keys, no NaN, no NUL, nesting
    capped), an R4 resource type and a FHIR id, without the R4 model checks (``resource_valid``). The bulk
    intake decodes first and validates only what it has not stored already. Never raises."""
    stripped = data.strip()
    if not stripped.startswith(b"{"):
        try:
            text = stripped.decode("utf-8")
        except UnicodeDecodeError:
            return ParsedLine(None, NOT_JSON)
        return ParsedLine(None, NOT_AN_OBJECT if _not_an_object(text) else NOT_JSON)
    limits = Limits(max_body_bytes=len(data), max_bundle_entries=0, max_nesting_depth=max_nesting_depth)
    try:
        resource = parse_json_body(stripped, "application/fhir+json", limits=limits)
    except FhirError as error:
        # 413: nested too deeply (legal JSON that FHIR input may not be); 400: not (FHIR) JSON at all
        return ParsedLine(None, INVALID if error.status == 413 else NOT_JSON)
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        return ParsedLine(None, NO_RESOURCE_TYPE)
    if not resource_types.is_r4_resource_type(resource_type) or not resource_types.is_supported_resource_type(
        resource_type
    ):
        return ParsedLine(None, UNKNOWN_RESOURCE_TYPE)
    resource_id = resource.get("id")
    if not isinstance(resource_id, str) or not _FHIR_ID.fullmatch(resource_id):
        return ParsedLine(None, NO_ID)
    return ParsedLine(resource)


def resource_valid(resource: dict[str, Any]) -> bool:
    """The push path's check of one Bundle entry's resource: the R4 model, required codes, references."""
    return not check_resource(resource).issues


def line_parse(data: bytes, *, max_nesting_depth: int = 64) -> ParsedLine:
    """Parse one NDJSON line as the push path parses a request body and validates a Bundle entry: FHIR
    JSON (UTF-8, no duplicate keys, no NaN, no NUL, nesting capped), an R4 resource type, a FHIR id, then
    the same R4 model and required-code checks. Never raises."""
    parsed = line_decode(data, max_nesting_depth=max_nesting_depth)
    if parsed.resource is not None and not resource_valid(parsed.resource):
        return ParsedLine(None, INVALID)
    return parsed


def version_marker(resource: dict[str, Any]) -> str:
    """What tells this version of the resource from another: ``meta.versionId``, else ``meta.lastUpdated``,
    else the digest of its content (canonical JSON), each prefixed so that the three never collide."""
    meta = resource.get("meta")
    if isinstance(meta, dict):
        version_id = meta.get("versionId")
        if isinstance(version_id, str) and version_id:
            return f"versionId:{version_id}"
        last_updated = meta.get("lastUpdated")
        if isinstance(last_updated, str) and last_updated:
            return f"lastUpdated:{last_updated}"
    canonical = json.dumps(resource, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return "content:" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
