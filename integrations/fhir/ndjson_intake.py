"""An EHR client's population as NDJSON: ``POST [base]`` with ``Content-Type: application/fhir+ndjson``, one
resource per line. The body is read as it arrives (never whole in memory) into one bulk batch, split per
patient and queued into the same pipeline as a pushed Bundle; the answer is 202 with the batch's id and its
counts. SMART scopes apply per line as they do per Bundle entry (each line is a PUT of its resource): a line
the token may not write refuses the whole request (403): the batch is cancelled and no patient of it is
processed (resources of no patient that the token may write stay held, as references to resolve)."""

from __future__ import annotations

from collections.abc import Iterable

from clinical_ai.accounts.models import Organization
from clinical_ai.audit.services import Actor
from clinical_ai.fhir.ndjson import NDJSON_MEDIA_TYPE
from clinical_ai.fhir.outcome import FhirError, Issue, operation_outcome
from clinical_ai.intake.bulk import (
    FORBIDDEN,
    BatchWriter,
    CountedChunks,
    batch_cancel,
    batch_finish,
    batch_open,
    max_file_bytes,
)
from clinical_ai.intake.models import BulkBatch
from integrations.fhir.services import FhirResponse
from integrations.smart.principal import SmartPrincipal

# application/fhir+ndjson is the Bulk Data IG's media type; plain NDJSON names are taken as the same.
NDJSON_MEDIA_TYPES = frozenset({NDJSON_MEDIA_TYPE, "application/ndjson", "application/x-ndjson"})
# Error lines given back in the answer (the batch keeps up to 100).
MAX_REPORTED_LINES = 20


def is_ndjson(content_type: str | None) -> bool:
    media_type = (content_type or "").partition(";")[0].strip().lower()
    return media_type in NDJSON_MEDIA_TYPES


def ndjson_post_ingest(
    *, principal: SmartPrincipal, chunks: Iterable[bytes], declared_length: int, request_id: str
) -> FhirResponse:
    """Read the posted NDJSON into a new batch and queue its patients. A body shorter than its declared
    length (the client went away) cancels the batch: nothing of it is processed. Raises FhirError for a body
    this endpoint does not take at all."""
    if declared_length <= 0:
        raise FhirError.single(400, "required", "The NDJSON body is empty: send one FHIR resource per line")
    if declared_length > max_file_bytes():
        raise FhirError.single(413, "too-costly", f"The NDJSON body is larger than {max_file_bytes()} bytes")
    organization = Organization.objects.get(pk=principal.organization_id)
    actor = Actor.ehr_client(principal.client_id)
    batch = batch_open(
        organization=organization,
        origin=BulkBatch.Origin.POST,
        label=f"NDJSON posted by {principal.client_id}",
        actor=actor,
        request_id=request_id,
    )
    body = CountedChunks(chunks)
    BatchWriter(batch, actor=actor).feed(
        "body", body, allowed=lambda resource_type: principal.can(resource_type, "update")
    )
    if body.received < declared_length:
        batch_cancel(batch, actor=actor, reason="the body ended before its Content-Length")
        raise FhirError.single(
            400, "incomplete", "The body ended before its Content-Length; nothing was kept"
        )
    batch.refresh_from_db()
    if batch.errors.get(FORBIDDEN):
        # As for a Bundle with an entry the scopes do not allow: the whole request is refused.
        batch_cancel(batch, actor=actor, reason="resource types the access token may not write")
        lines = [error["line"] for error in batch.error_lines if error["reason"] == FORBIDDEN]
        issues = [
            Issue(
                code="forbidden",
                diagnostics=f"line {line}: the access token's scopes do not allow writing this resource type",
                expression=(f"line[{line}]",),
            )
            for line in lines[:MAX_REPORTED_LINES]
        ] or [Issue(code="forbidden", diagnostics="Lines of resource types the access token may not write")]
        raise FhirError(403, issues)
    queued = batch_finish(batch, actor=actor)
    batch.refresh_from_db()
    summary = (
        f"Batch {batch.external_id}: {batch.lines_read} lines read, {batch.resources_staged} resources stored "
        f"for {queued} patients, {batch.duplicates_skipped} already stored, {batch.references_held} kept for "
        f"references, {batch.lines_refused} refused"
    )
    issues = [Issue(code="informational", diagnostics=summary, severity="information")]
    issues += [
        Issue(
            code="forbidden" if error["reason"] == "forbidden" else "invalid",
            diagnostics=f"line {error['line']}: {error['reason']}",
            severity="error",
            expression=(f"line[{error['line']}]",),
        )
        for error in batch.error_lines[:MAX_REPORTED_LINES]
    ]
    return FhirResponse(202, operation_outcome(issues), {"X-Batch-Id": str(batch.external_id)})
