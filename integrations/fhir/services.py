"""FHIR R4 intake: turn one HTTP request into an accepted job or a clear refusal, and audit either way.

Thin over the pure validation core (clinical_ai.fhir.validation) and the intake stage
(clinical_ai.intake.services): this module owns the FHIR semantics — transaction vs batch, idempotency,
authorization by SMART scope, and the transaction-response / batch-response shapes.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.fhir.outcome import FhirError, Issue, informational_outcome, operation_outcome
from clinical_ai.fhir.validation import (
    Limits,
    check_intake_bundle,
    parse_json_body,
    supported_resource_types,
    validate_resource,
)
from clinical_ai.fhir.validation_names import audit_safe_expression
from clinical_ai.intake.models import IngestJob
from clinical_ai.intake.services import IntakeEntry, ingest_job_create
from integrations.smart.principal import SmartPrincipal
from integrations.smart.scopes import Action

MAX_REPORTED_ISSUES = 100


@dataclass(frozen=True)
class FhirResponse:
    status: int
    body: Mapping[str, Any] | None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IntakeRequest:
    """What the view hands over: the raw request, undecoded, plus the headers that matter."""

    principal: SmartPrincipal
    raw_body: bytes
    content_type: str | None
    url_resource_type: str | None  # None for the system endpoint POST /fhir
    request_id: str
    client_request_id: str | None  # X-Request-Id as the client sent it (None when absent or unusable)
    if_none_exist: str | None
    prefer: str | None
    base_url: str  # e.g. https://cds.example.org/fhir


def intake_limits() -> Limits:
    return Limits(
        max_body_bytes=settings.FHIR_MAX_BODY_BYTES,
        max_bundle_entries=settings.FHIR_MAX_BUNDLE_ENTRIES,
        max_nesting_depth=settings.FHIR_MAX_NESTING_DEPTH,
    )


def fhir_request_ingest(*, request: IntakeRequest) -> FhirResponse:
    """Answer one intake request. Never raises for bad input: every refusal is an OperationOutcome,
    audited, and leaves nothing behind."""
    try:
        if request.url_resource_type is None:
            return _ingest_bundle(request)
        return _ingest_single(request)
    except FhirError as err:
        return _refuse(request, err)


def fhir_request_refuse(*, request_id: str, status: int, reason: str, actor: Actor | None = None) -> None:
    """Audit a request refused before it reached intake (no or bad token, wrong method, body too large)."""
    audit_record(
        actor=actor or Actor.anonymous(),
        action="fhir.intake.refuse",
        outcome=Outcome.FAILURE,
        request_id=request_id,
        detail={"status": status, "reason": reason},
    )


def _refuse(request: IntakeRequest, err: FhirError) -> FhirResponse:
    issues = err.issues[:MAX_REPORTED_ISSUES]
    audit_record(
        actor=Actor.ehr_client(request.principal.client_id),
        action="fhir.intake.refuse",
        outcome=Outcome.FAILURE,
        organization=request.principal.organization_slug,
        request_id=request.request_id,
        # Issue codes and element paths only: diagnostics may quote the submitted values.
        detail={
            "status": err.status,
            "issue_codes": sorted({i.code for i in issues}),
            "expressions": [audit_safe_expression(e) for i in issues[:10] for e in i.expression][:10],
            "issue_count": len(err.issues),
        },
    )
    return FhirResponse(err.status, operation_outcome(issues))


def _sha256(data: bytes | str) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def _idempotency_key(bundle_or_resource: Mapping[str, Any], request: IntakeRequest) -> str:
    identifier = (
        bundle_or_resource.get("identifier") if bundle_or_resource.get("resourceType") == "Bundle" else None
    )
    if isinstance(identifier, dict) and identifier.get("value"):
        return _sha256(f"bundle-identifier:{identifier.get('system', '')}|{identifier['value']}")
    if request.if_none_exist:
        return _sha256(f"if-none-exist:{request.if_none_exist}")
    if request.client_request_id:
        return _sha256(f"x-request-id:{request.client_request_id}")
    return ""


def _replay_if_known(request: IntakeRequest, key: str, input_sha256: str) -> FhirResponse | None:
    if not key:
        return None
    job = IngestJob.objects.filter(client_id=request.principal.client_pk, idempotency_key_sha256=key).first()
    if job is None:
        return None
    if job.input_sha256 != input_sha256:
        raise FhirError.single(
            409,
            "conflict",
            "This idempotency key (Bundle.identifier, If-None-Exist or X-Request-Id) was already used for "
            "different content; send new content with a new key.",
        )
    audit_record(
        actor=Actor.ehr_client(request.principal.client_id),
        action="fhir.intake.replay",
        object_type="IngestJob",
        object_id=str(job.external_id),
        organization=request.principal.organization_slug,
        request_id=request.request_id,
        detail={"status": job.response_status},
    )
    return FhirResponse(job.response_status, job.response_body, _location_headers(job.response_location))


def _location_headers(location: str) -> dict[str, str]:
    return {"Location": location} if location else {}


def _authorize(principal: SmartPrincipal, resource_type: str, method: str, expression: str) -> Issue | None:
    action: Action = "update" if method == "PUT" else "create"
    if principal.can(resource_type, action):
        return None
    return Issue(
        code="forbidden",
        diagnostics=f"The access token's scopes do not allow {action} of {resource_type}",
        expression=(expression,),
    )


def _ingest_bundle(request: IntakeRequest) -> FhirResponse:
    body = parse_json_body(request.raw_body, request.content_type, limits=intake_limits())
    if body.get("resourceType") != "Bundle":
        raise FhirError.single(
            422,
            "not-supported",
            "POST to the base URL takes a Bundle of type transaction or batch; post single resources to "
            "[base]/{resourceType}",
            "resourceType",
        )
    check = check_intake_bundle(body, limits=intake_limits())
    if check.bundle_issues:
        raise FhirError(422, check.bundle_issues)
    forbidden = [
        issue
        for entry in check.entries
        if entry.resource_type
        and (
            issue := _authorize(
                request.principal, entry.resource_type, entry.method or "POST", f"Bundle.entry[{entry.index}]"
            )
        )
    ]
    if forbidden:
        raise FhirError(403, forbidden)
    if check.bundle_type == "transaction" and not check.ok:
        raise FhirError(422, [issue for entry in check.entries for issue in entry.issues])

    input_sha256 = _sha256(request.raw_body)
    key = _idempotency_key(body, request)
    replay = _replay_if_known(request, key, input_sha256)
    if replay is not None:
        return replay

    now = timezone.now().isoformat()
    entries: list[IntakeEntry] = []
    response_entries: list[dict[str, Any]] = []
    raw_entries = body.get("entry") or []
    for result in check.entries:
        if result.issues or not result.resource_type:
            response_entries.append(
                {
                    "response": {
                        "status": "422 Unprocessable Entity",
                        "outcome": _stored_outcome(result.issues),
                    }
                }
            )
            continue
        server_id = uuid.uuid4()
        raw = raw_entries[result.index]
        entries.append(
            IntakeEntry(
                external_id=server_id,
                entry_index=result.index,
                resource_type=result.resource_type,
                document={
                    "fullUrl": raw.get("fullUrl"),
                    "request": raw.get("request"),
                    "resource": raw["resource"],
                },
            )
        )
        response_entries.append(
            {
                "response": {
                    "status": "201 Created",
                    "location": f"{result.resource_type}/{server_id}/_history/1",
                    "etag": 'W/"1"',
                    "lastModified": now,
                }
            }
        )
    response_body = {
        "resourceType": "Bundle",
        "type": f"{check.bundle_type}-response",
        "timestamp": now,
        "entry": response_entries,
    }
    if not entries:
        # A batch whose every entry was refused: nothing to store, the per-entry outcomes say why.
        audit_record(
            actor=Actor.ehr_client(request.principal.client_id),
            action="fhir.intake.refuse",
            outcome=Outcome.FAILURE,
            organization=request.principal.organization_slug,
            request_id=request.request_id,
            detail={"status": 200, "kind": "batch", "refused_entries": len(response_entries)},
        )
        return FhirResponse(200, response_body)
    return _store(request, check.bundle_type, entries, key, input_sha256, 200, response_body, "")


def _stored_outcome(issues: Sequence[Issue]) -> dict[str, Any]:
    """The per-entry outcome kept in the job row: codes and paths, not diagnostics that may quote PHI. The
    paths name FHIR elements only: a key the sender made up could be PHI, or hold a NUL, which a
    PostgreSQL jsonb column refuses."""
    stored = []
    for issue in issues[:20]:
        expression = tuple(audit_safe_expression(e) for e in issue.expression)
        stored.append(
            Issue(
                code=issue.code,
                diagnostics=f"{issue.code} at {', '.join(expression) or 'entry'}",
                expression=expression,
            )
        )
    return operation_outcome(stored)


def _ingest_single(request: IntakeRequest) -> FhirResponse:
    resource_type = request.url_resource_type or ""
    if resource_type not in supported_resource_types():
        raise FhirError.single(
            404,
            "not-supported",
            f"Resource type {resource_type!r} is not supported by this server (FHIR R4 4.0.1)",
        )
    body = parse_json_body(request.raw_body, request.content_type, limits=intake_limits())
    if body.get("resourceType") != resource_type:
        raise FhirError.single(
            400,
            "invalid",
            f"The body's resourceType {str(body.get('resourceType'))[:64]!r} does not match the URL ({resource_type})",
            "resourceType",
        )
    forbidden = _authorize(request.principal, resource_type, "POST", resource_type)
    if forbidden:
        raise FhirError(403, [forbidden])
    issues = validate_resource(body)
    if issues:
        raise FhirError(422, issues)

    input_sha256 = _sha256(request.raw_body)
    key = _idempotency_key(body, request)
    replay = _replay_if_known(request, key, input_sha256)
    if replay is not None:
        return replay

    server_id = uuid.uuid4()
    location = f"{request.base_url}/{resource_type}/{server_id}/_history/1"
    response_body = informational_outcome(f"Created {resource_type}/{server_id}; queued for processing")
    entry = IntakeEntry(
        external_id=server_id,
        entry_index=0,
        resource_type=resource_type,
        document={"fullUrl": None, "request": {"method": "POST", "url": resource_type}, "resource": body},
    )
    return _store(request, IngestJob.Kind.RESOURCE, [entry], key, input_sha256, 201, response_body, location)


def _store(
    request: IntakeRequest,
    kind: str,
    entries: list[IntakeEntry],
    key: str,
    input_sha256: str,
    status: int,
    response_body: dict[str, Any],
    location: str,
) -> FhirResponse:
    principal = request.principal
    try:
        ingest_job_create(
            actor=Actor.ehr_client(principal.client_id),
            client_pk=principal.client_pk,
            organization_pk=principal.organization_id,
            organization_slug=principal.organization_slug,
            kind=kind,
            entries=entries,
            request_id=request.request_id,
            idempotency_key_sha256=key,
            input_sha256=input_sha256,
            response_status=status,
            response_body=response_body,
            response_location=location,
        )
    except IntegrityError:
        # The same key raced in from a concurrent request and won: answer as it was answered.
        replay = _replay_if_known(request, key, input_sha256)
        if replay is None:
            raise
        return replay
    return FhirResponse(status, response_body, _location_headers(location))
