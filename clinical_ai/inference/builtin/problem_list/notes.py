"""Clinical notes of one patient: the text attachments of DocumentReferences and DiagnosticReports.

A note is a ``text/plain`` or ``text/markdown`` attachment (or one without a content type) carried inline as
base64 ``data``, UTF-8. Attachments by URL are not fetched: a model never reaches the network. Resources
marked ``entered-in-error`` are skipped. The same text met twice for one patient is read once: Synthea, and
many EHRs, copy each note into the ``presentedForm`` of a DiagnosticReport too, and reading it twice would
only double the evidence.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from clinical_ai.inference.engine.types import PatientContext, SourceResource

TEXT_TYPES = frozenset({"", "text/plain", "text/markdown"})
ENTERED_IN_ERROR = "entered-in-error"


@dataclass(frozen=True)
class Note:
    ref: str  # SourceResource.ref of the resource that holds it
    resource_type: str
    attachment: int  # index in DocumentReference.content / DiagnosticReport.presentedForm
    date: str | None  # as recorded (de-identified: shifted)
    text: str


@dataclass(frozen=True)
class NotesRead:
    notes: tuple[Note, ...]
    duplicates: int  # attachments whose text an earlier note of the patient already had
    unreadable: int  # text attachments we could not read (unsupported type, no inline data, not UTF-8)


def _note_date(resource: Mapping[str, Any]) -> str | None:
    if resource.get("resourceType") == "DocumentReference":
        period = (resource.get("context") or {}).get("period") or {}
        value = resource.get("date") or period.get("start")
    else:
        period = resource.get("effectivePeriod") or {}
        value = resource.get("effectiveDateTime") or period.get("start") or resource.get("issued")
    return str(value) if value else None


def _attachments(resource: Mapping[str, Any]) -> Iterator[tuple[int, Mapping[str, Any]]]:
    if resource.get("resourceType") == "DocumentReference":
        for index, content in enumerate(resource.get("content") or []):
            attachment = content.get("attachment") if isinstance(content, Mapping) else None
            if isinstance(attachment, Mapping):
                yield index, attachment
    else:
        for index, attachment in enumerate(resource.get("presentedForm") or []):
            if isinstance(attachment, Mapping):
                yield index, attachment


def attachment_text(attachment: Mapping[str, Any]) -> str | None:
    """The decoded text of an inline text attachment; None when it is not one we read."""
    content_type = str(attachment.get("contentType") or "").split(";")[0].strip().lower()
    data = attachment.get("data")
    if content_type not in TEXT_TYPES or not isinstance(data, str) or not data:
        return None
    try:
        return base64.b64decode("".join(data.split()), validate=True).decode("utf-8-sig")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None


def _is_error(source: SourceResource) -> bool:
    resource = source.resource
    return resource.get("status") == ENTERED_IN_ERROR or resource.get("docStatus") == ENTERED_IN_ERROR


def notes_read(context: PatientContext) -> NotesRead:
    notes: list[Note] = []
    seen: set[str] = set()
    duplicates = unreadable = 0
    sources = [*context.of_type("DocumentReference"), *context.of_type("DiagnosticReport")]
    for source in sources:
        if _is_error(source):
            continue
        date = _note_date(source.resource)
        for index, attachment in _attachments(source.resource):
            if attachment.get("contentType") and not str(attachment["contentType"]).startswith("text/"):
                continue  # a PDF or an image: not a note we can read, and not an error either
            text = attachment_text(attachment)
            if text is None:
                unreadable += 1
                continue
            if not text.strip():
                continue
            if text in seen:
                duplicates += 1
                continue
            seen.add(text)
            notes.append(Note(source.ref, source.resource_type, index, date, text))
    return NotesRead(tuple(notes), duplicates, unreadable)
