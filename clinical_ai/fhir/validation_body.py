"""Turning an HTTP request body into a FHIR JSON object, or a FhirError saying why not.

Pure: bytes and a Content-Type header in, a ``dict`` out. No diagnostics here quote the body: a body is
PHI until proven otherwise.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from clinical_ai.fhir.outcome import FhirError

UTF8_BOM = b"\xef\xbb\xbf"

# application/fhir+json is the R4 media type; application/json is allowed by the REST spec, and
# application/json+fhir is the DSTU2 spelling that some EHRs (and the _format parameter) still send.
ACCEPTED_MEDIA_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})

_FORBIDDEN_CHARACTER = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True)
class Limits:
    """What one request may cost. ``max_nesting_depth`` counts the top-level object as depth 1."""

    max_body_bytes: int
    max_bundle_entries: int
    max_nesting_depth: int


class _InvalidJson(ValueError):
    """Valid JSON syntax that FHIR JSON still forbids (duplicate keys, NaN)."""


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _InvalidJson(
            "an object has the same property more than once (FHIR JSON forbids duplicate keys)"
        )
    return obj


def _reject_constant(name: str) -> Any:
    raise _InvalidJson(f"{name} is not a JSON number")


def check_content_type(content_type: str | None) -> None:
    """415 unless the body is declared as FHIR JSON (or plain JSON) in UTF-8 for FHIR R4."""
    if content_type is None or not content_type.strip():
        raise FhirError.single(415, "not-supported", "Content-Type is required: send application/fhir+json")
    media_type, _, parameters = content_type.partition(";")
    if media_type.strip().lower() not in ACCEPTED_MEDIA_TYPES:
        raise FhirError.single(
            415, "not-supported", "Unsupported Content-Type: send application/fhir+json (FHIR R4 JSON)"
        )
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        name = name.strip().lower()
        value = value.strip().strip('"').lower()
        if name == "charset" and value not in ("utf-8", "utf8"):
            raise FhirError.single(415, "not-supported", "FHIR JSON must be encoded as UTF-8")
        if name == "fhirversion" and value not in ("4.0", "4.0.1"):
            raise FhirError.single(415, "not-supported", "This server accepts FHIR R4 (fhirVersion=4.0) only")


def nesting_depth_exceeds(value: Any, max_depth: int) -> bool:
    """Whether any object or array in ``value`` lies deeper than ``max_depth`` (iterative: a hostile
    body must not be able to exhaust the stack here)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            return True
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def forbidden_character(value: Any) -> str | None:
    """What no key or string of a JSON document may hold, when one does: ``"NUL"`` (FHIR strings exclude
    control characters, and PostgreSQL text and jsonb cannot store U+0000) or ``"an unpaired UTF-16
    surrogate"`` (JSON escapes can spell half a pair, ``"\\ud800"``; such a string cannot be encoded back to
    UTF-8 and would fail later, when the resource is stored or de-identified). Iterative, like the depth
    check."""
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        strings: list[str] = []
        children: list[Any]
        if isinstance(node, dict):
            strings.extend(node)
            children = list(node.values())
        else:
            children = node if isinstance(node, list) else [node]
        for child in children:
            if isinstance(child, str):
                strings.append(child)
            elif isinstance(child, dict | list):
                stack.append(child)
        for text in strings:
            found = _FORBIDDEN_CHARACTER.search(text)
            if found is not None:
                return "NUL" if found.group() == "\x00" else "an unpaired UTF-16 surrogate"
    return None


def parse_json_body(body: bytes, content_type: str | None, *, limits: Limits) -> dict[str, Any]:
    """Decode a FHIR JSON request body. Raises FhirError with status 415, 413 or 400."""
    check_content_type(content_type)
    if len(body) > limits.max_body_bytes:
        raise FhirError.single(
            413, "too-costly", f"The request body is larger than {limits.max_body_bytes} bytes"
        )
    if body.startswith(UTF8_BOM):
        body = body[len(UTF8_BOM) :]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FhirError.single(
            400, "structure", f"The request body is not valid UTF-8 (at byte {exc.start})"
        ) from None
    try:
        value = json.loads(text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise FhirError.single(
            400, "structure", f"Malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except _InvalidJson as exc:
        raise FhirError.single(400, "structure", f"Invalid FHIR JSON: {exc}") from None
    except RecursionError:
        raise FhirError.single(400, "structure", "Malformed JSON: nested too deeply to parse") from None
    except ValueError:
        # e.g. an integer longer than Python's int parsing limit
        raise FhirError.single(400, "structure", "Malformed JSON: a value cannot be parsed") from None
    if not isinstance(value, dict):
        raise FhirError.single(400, "structure", "The request body must be a JSON object (a FHIR resource)")
    if nesting_depth_exceeds(value, limits.max_nesting_depth):
        raise FhirError.single(
            413, "too-costly", f"The JSON is nested deeper than {limits.max_nesting_depth} levels"
        )
    forbidden = forbidden_character(value)
    if forbidden is not None:
        raise FhirError.single(400, "structure", f"The JSON contains {forbidden} (as an escape)")
    return value
