"""``scrub`` (ours): free text is queued for the text scrubber, which the engine calls once per input.

Narrative divs go as ``xhtml``; string and markdown values as ``plain``; an Attachment or Binary with
``text/plain`` or ``text/html`` content is decoded, queued, and re-encoded afterwards with its ``size``
and ``hash`` updated. Content of any other type cannot be checked and is removed. Other primitives
(codes, dates, uris ...) are not taken, so later rules still apply to them.
"""

from __future__ import annotations

import base64
import hashlib
import re

from clinical_ai.deid.engine.config import Rule
from clinical_ai.deid.engine.methods import (
    NOT_CLAIMED,
    MethodContext,
    Operation,
    Outcome,
    ProcessingError,
    ScrubTarget,
)
from clinical_ai.deid.engine.nodes import Node
from clinical_ai.deid.engine.types import TextItem, TextKind

_TEXT_TYPES = frozenset({"string", "markdown"})
_CONTENT_HOLDERS = frozenset({"Attachment", "Binary"})  # base64 ``data`` with a ``contentType``
_CONTENT_TYPE_RE = re.compile(r"^\s*text/(plain|html)\s*(;.*)?$", re.IGNORECASE)
_CHARSET_RE = re.compile(r"charset\s*=\s*\"?([A-Za-z0-9._-]+)", re.IGNORECASE)


def scrub(node: Node, rule: Rule, context: MethodContext) -> Outcome:
    if node.fhir_type in _CONTENT_HOLDERS:
        return _scrub_attachment(node, context)
    if node.name == "data" and node.parent is not None and node.parent.fhir_type in _CONTENT_HOLDERS:
        return _scrub_attachment(node.parent, context)
    if not node.primitive or not isinstance(node.value, str) or node.value == "":
        return NOT_CLAIMED
    kind: TextKind
    if node.fhir_type == "xhtml":
        kind = "xhtml"
    elif node.fhir_type in _TEXT_TYPES or node.fhir_type is None:
        kind = "plain"
    else:
        return NOT_CLAIMED  # codes, uris, dates ... are not free text; later rules may take them

    def write_back(text: str | None) -> None:
        text = text if text and text.strip() else None  # FHIR strings are never empty
        node.value = text
        parent = node.parent
        if text is None and kind == "xhtml" and parent is not None and parent.fhir_type == "Narrative":
            # A Narrative without its div is invalid: drop the status too, so the whole text goes.
            for sibling in parent.children_named("status"):
                sibling.value = None

    context.scrub_targets.append(ScrubTarget(context.resource, TextItem(node.value, kind), write_back))
    return Outcome()


def _scrub_attachment(attachment: Node, context: MethodContext) -> Outcome:
    """Attachment or Binary: text/plain and text/html content is decoded, scrubbed and re-encoded (size
    and hash updated); any other content is removed, since it cannot be checked."""
    data = attachment.first_child("data")
    if data is None or data in context.visited or not isinstance(data.value, str) or not data.value:
        return NOT_CLAIMED
    context.visited.add(data)
    content_type = attachment.first_child("contentType")
    content_text = (
        content_type.value if content_type is not None and isinstance(content_type.value, str) else ""
    )
    type_match = _CONTENT_TYPE_RE.match(content_text)
    if type_match is None:
        # Binary content we cannot read (PDF, images ...): fail closed.
        _drop_attachment_data(attachment, data, context)
        return Outcome(frozenset({Operation.REDACT}), claimed=False)
    charset_match = _CHARSET_RE.search(type_match.group(2) or "")
    charset = charset_match.group(1) if charset_match else "utf-8"
    try:
        text = base64.b64decode(data.value, validate=False).decode(charset)
    except (ValueError, LookupError) as error:
        raise ProcessingError(f"attachment data at {attachment.location()} is not {charset} text") from error
    kind: TextKind = "xhtml" if type_match.group(1).lower() == "html" else "plain"

    def write_back(result: str | None) -> None:
        if not result:
            _drop_attachment_data(attachment, data, context)
            return
        encoded = result.encode(charset, errors="replace")
        data.value = base64.b64encode(encoded).decode("ascii")
        size = attachment.first_child("size")
        if size is not None:
            size.value = len(encoded)
        digest = attachment.first_child("hash")
        if digest is not None:
            digest.value = base64.b64encode(hashlib.sha1(encoded).digest()).decode("ascii")  # noqa: S324 - FHIR defines SHA-1

    context.scrub_targets.append(ScrubTarget(context.resource, TextItem(text, kind), write_back))
    return Outcome(claimed=False)


def _drop_attachment_data(attachment: Node, data: Node, context: MethodContext) -> None:
    data.value = None
    if data.children:
        context.structure_changes += 1
    data.children = []
    for name in ("size", "hash"):
        stale = attachment.first_child(name)
        if stale is not None:
            stale.value = None
