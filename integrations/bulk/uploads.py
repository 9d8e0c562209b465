"""An NDJSON file sent by a site's admin from the EHR sources page, streamed as it arrives into one bulk batch
(split per patient, sealed, queued into the same pipeline as a pushed Bundle). The file is never held whole
in memory nor written to disk: the upload handler takes over the multipart parsing so that the form fields
sent before the file (the site, the CSRF token) are checked before any of its bytes is stored, then hands the
file part's chunks straight to ``BatchWriter.feed``.

The batch is labelled "File sent by <username>", not with the file name (a file name may name a patient);
the name is shown once, to its sender, in the message after the upload, and is never stored or audited."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import chain
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest, QueryDict
from django.http.multipartparser import FIELD, FILE, ChunkIter, LazyStream, Parser
from django.utils.datastructures import MultiValueDict
from django.utils.encoding import force_str

from clinical_ai.accounts.models import Organization
from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.intake.bulk import (
    FILE_TOO_LARGE,
    BatchWriter,
    CountedChunks,
    batch_cancel,
    batch_finish,
    batch_open,
    max_file_bytes,
)
from clinical_ai.intake.models import BulkBatch
from integrations.bulk.selectors import REFUSAL_WORDS, upload_site_for_admin

UPLOAD_ACTION = "bulk.upload"
FILE_FIELD = "file"
SITE_FIELD = "site"
# The form's other fields (the site, the CSRF token) and the multipart framing: a body may exceed the file cap
# by this much.
FORM_ALLOWANCE_BYTES = 64 * 1024
MAX_FIELDS = 8
MAX_FIELD_BYTES = 1024
# Refused lines named in the message after the upload (the batch keeps up to 100).
MESSAGE_LINES = 5

# Why an upload stored nothing.
NOT_ADMIN = "not_admin"
CSRF = "csrf"
TOO_LARGE = "too_large"
EMPTY = "empty"
NO_USABLE_LINE = "no_usable_line"
NO_FILE = "no_file"


@dataclass
class UploadResult:
    """What became of one upload. ``file_name`` is for the sender's message only."""

    refused: str = ""
    file_name: str = ""
    organization: Organization | None = None
    batch: BulkBatch | None = None
    bytes_received: int = 0
    patients_queued: int = 0


def _drain(part: Iterable[bytes]) -> None:
    """Read a part to its end, keeping nothing of it."""
    for _ in part:
        pass


class NdjsonUploadHandler(FileUploadHandler):
    """Parses the upload form's body itself (``handle_raw_input``): fields are kept (bounded), the first file
    part named ``file`` is streamed into a new batch of the chosen site once the fields before it are known
    good (``token_valid`` says the CSRF token is; the user must administer the site), any other file part is
    read and dropped. ``result`` says what happened; ``largest_chunk`` is the most file bytes held at once."""

    chunk_size = 256 * 1024

    def __init__(
        self,
        request: HttpRequest,
        *,
        user: Any,
        request_id: str,
        token_valid: Callable[[QueryDict], bool],
    ) -> None:
        super().__init__(request)
        self.user = user
        self.request_id = request_id
        self.token_valid = token_valid
        self.result: UploadResult | None = None
        self.largest_chunk = 0

    def handle_raw_input(
        self,
        input_data: Any,
        META: dict[str, Any],
        content_length: int,
        boundary: Any,  # bytes, whatever the stubs say
        encoding: str | None = None,
    ) -> tuple[QueryDict, MultiValueDict[str, Any]]:
        charset = encoding or settings.DEFAULT_CHARSET
        pairs: list[tuple[str, str]] = []
        stream = LazyStream(ChunkIter(input_data, self.chunk_size))
        for item_type, meta, part in Parser(stream, boundary):
            try:
                disposition = meta["content-disposition"][1]
                name = force_str(disposition["name"], charset, errors="replace").strip()
            except (KeyError, IndexError, AttributeError):
                _drain(part)
                continue
            if item_type == FIELD:
                if len(pairs) >= MAX_FIELDS:
                    raise TooManyFieldsSent("too many fields in the upload form")
                data = part.read(MAX_FIELD_BYTES + 1)
                if len(data) > MAX_FIELD_BYTES:
                    raise RequestDataTooBig("a field of the upload form is too large")
                _drain(part)
                pairs.append((name, data.decode(charset, errors="replace")))
            elif item_type == FILE and name == FILE_FIELD and self.result is None:
                fields = QueryDict(urlencode(pairs), encoding=charset)
                file_name = force_str(disposition.get("filename") or "", charset, errors="replace")
                file_name = file_name.replace("\\", "/").rsplit("/", 1)[-1][:200]
                self.result = self._file_take(fields, file_name, part, content_length)
                if self.result.refused in (NOT_ADMIN, CSRF, TOO_LARGE):
                    break  # nothing of it is read: the server drops the rest of the body
            else:
                _drain(part)
        return QueryDict(urlencode(pairs), encoding=charset), MultiValueDict()

    def _file_take(
        self, fields: QueryDict, file_name: str, part: Iterable[bytes], content_length: int
    ) -> UploadResult:
        if not self.token_valid(fields):
            return UploadResult(refused=CSRF, file_name=file_name)
        organization = upload_site_for_admin(self.user, fields.get(SITE_FIELD, ""))
        if organization is None:
            return UploadResult(refused=NOT_ADMIN, file_name=file_name)
        result = UploadResult(file_name=file_name, organization=organization)
        if content_length > max_file_bytes() + FORM_ALLOWANCE_BYTES:
            result.refused = TOO_LARGE
            return result
        chunks = iter(part)
        first = next(chunks, b"")
        if not first:
            result.refused = EMPTY
            return result
        actor = Actor.user(str(self.user.pk))
        label = f"File sent by {self.user.get_username()}"
        batch = batch_open(
            organization=organization,
            origin=BulkBatch.Origin.FILE,
            label=label,
            actor=actor,
            request_id=self.request_id,
        )
        counted = CountedChunks(chain([first], chunks))
        progress = BatchWriter(batch, actor=actor).feed(label, counted)
        self.largest_chunk = counted.largest
        result.batch, result.bytes_received = batch, counted.received
        batch.refresh_from_db()
        if progress.stopped == FILE_TOO_LARGE:
            result.refused = TOO_LARGE
            batch_cancel(batch, actor=actor, reason="The file was larger than allowed; nothing was kept")
        elif not (batch.resources_staged + batch.duplicates_skipped + batch.references_held):
            result.refused = NO_USABLE_LINE
            batch_cancel(batch, actor=actor, reason="No line of the file could be used")
        else:
            result.patients_queued = batch_finish(batch, actor=actor)
        batch.refresh_from_db()
        return result


def upload_record(*, user: Any, result: UploadResult, request_id: str) -> None:
    """The one audit event of an upload, done or refused: sizes and counts, never the file's name or content."""
    batch = result.batch
    detail: dict[str, Any] = {"bytes": result.bytes_received}
    if result.refused:
        detail["refused"] = result.refused
    if batch is not None:
        detail |= {
            "lines_read": batch.lines_read,
            "resources_staged": batch.resources_staged,
            "duplicates_skipped": batch.duplicates_skipped,
            "references_held": batch.references_held,
            "lines_refused": batch.lines_refused,
            "patients_queued": result.patients_queued,
        }
    audit_record(
        actor=Actor.user(str(user.pk)),
        action=UPLOAD_ACTION,
        outcome=Outcome.FAILURE if result.refused else Outcome.SUCCESS,
        object_type="BulkBatch" if batch is not None else "",
        object_id=str(batch.external_id) if batch is not None else "",
        organization=result.organization.slug if result.organization is not None else "",
        request_id=request_id,
        detail=detail,
    )


def _size_words(size: int) -> str:
    for unit, factor in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= factor:
            return f"{size / factor:,.3g} {unit}"
    return f"{size:,} bytes"


def _refused_lines_words(batch: BulkBatch) -> str:
    shown = [
        f"line {error['line']:,}: {REFUSAL_WORDS.get(str(error['reason']), str(error['reason']))}"
        for error in batch.error_lines[:MESSAGE_LINES]
    ]
    more = ", ..." if batch.lines_refused > len(shown) else ""
    return f" ({'; '.join(shown)}{more})" if shown else ""


def upload_limit_words() -> str:
    return _size_words(max_file_bytes())


def upload_words(result: UploadResult) -> str:
    """The message the sender reads after the upload."""
    name = result.file_name or "The file"
    if result.refused == NO_FILE:
        return "Choose a file to send; nothing was stored."
    if result.refused == TOO_LARGE:
        return (
            f"{name}: the file is larger than the {_size_words(max_file_bytes())} allowed; nothing was "
            "stored. Split it into smaller files and send each one."
        )
    if result.refused == EMPTY:
        return f"{name} is empty; nothing was stored."
    batch = result.batch
    if batch is None:
        return f"{name} was not taken; nothing was stored. Send it again from this page."
    if result.refused == NO_USABLE_LINE:
        return (
            f"{name}: none of its {batch.lines_read:,} lines is a FHIR R4 record that can be used"
            f"{_refused_lines_words(batch)}; nothing was stored."
        )
    patients = f"{result.patients_queued:,} patient{'' if result.patients_queued == 1 else 's'}"
    parts = [
        f"{name}: {batch.lines_read:,} lines read",
        f"{batch.resources_staged:,} records stored for {patients}",
    ]
    if batch.duplicates_skipped:
        parts.append(f"{batch.duplicates_skipped:,} already stored before (skipped)")
    if batch.references_held:
        parts.append(f"{batch.references_held:,} staff, places and organizations kept")
    refused = batch.lines_refused
    if refused:
        parts.append(f"{refused:,} line{'' if refused == 1 else 's'} refused{_refused_lines_words(batch)}")
    return (
        ", ".join(parts) + ". The patients are de-identified and the models run next; progress shows below."
    )
