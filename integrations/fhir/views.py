"""FHIR R4 REST endpoints. Thin: authenticate, read the request, call one service, format the answer."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from clinical_ai.audit.services import Actor
from clinical_ai.core.middleware import request_id_of
from clinical_ai.core.request_id import request_id_from_header
from clinical_ai.fhir.outcome import FhirError, Issue, operation_outcome
from integrations.fhir.capability import capability_statement
from integrations.fhir.ndjson_intake import is_ndjson, ndjson_post_ingest
from integrations.fhir.services import FhirResponse, IntakeRequest, fhir_request_ingest, fhir_request_refuse
from integrations.smart.decorators import smart_protected

FHIR_JSON = "application/fhir+json; charset=utf-8"
NDJSON_CHUNK_BYTES = 1024 * 1024


def _fhir_response(
    status: int, body: Mapping[str, Any] | None, headers: Mapping[str, str] | None = None
) -> HttpResponse:
    content = b"" if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
    response = HttpResponse(content, status=status, content_type=FHIR_JSON)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _outcome_response(
    status: int, code: str, text: str, headers: Mapping[str, str] | None = None
) -> HttpResponse:
    return _fhir_response(status, operation_outcome([Issue(code=code, diagnostics=text)]), headers)


def public_base_url(request: HttpRequest) -> str:
    return settings.PUBLIC_BASE_URL or request.build_absolute_uri("/").rstrip("/")


def _audit_unauthenticated(request: HttpRequest) -> None:
    fhir_request_refuse(request_id=request_id_of(request), status=401, reason="invalid_token")


@csrf_exempt  # public and read-only: without this, CSRF would answer a POST with an HTML 403, not the 405
def metadata(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return _outcome_response(
            405, "not-supported", "Use GET for the CapabilityStatement", {"Allow": "GET"}
        )
    base = public_base_url(request)
    return _fhir_response(200, capability_statement(base_url=f"{base}/fhir", token_url=f"{base}/auth/token"))


@csrf_exempt
def unknown_path(request: HttpRequest, path: str) -> HttpResponse:
    """Any other path under ``[base]``: a FHIR client gets an OperationOutcome, not Django's HTML 404."""
    return _outcome_response(
        404,
        "not-found",
        "No FHIR interaction here: this server takes POST [base] (transaction or batch), POST [base]/{type}, "
        "and read and search of the types it produces (see [base]/metadata)",
    )


def _ingest(request: HttpRequest, resource_type: str | None) -> HttpResponse:
    request_id = request_id_of(request)
    if request.method != "POST":
        fhir_request_refuse(request_id=request_id, status=405, reason="method_not_allowed")
        return _outcome_response(
            405,
            "not-supported",
            f"{request.method} is not supported here; this endpoint accepts POST",
            {"Allow": "POST"},
        )
    # A compressed body is refused unread: it is never inflated here (no zip bombs), and decoding it as
    # JSON would only report "not UTF-8", which does not tell the client what to change.
    encoding = (request.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding != "identity":
        fhir_request_refuse(request_id=request_id, status=415, reason="content_encoding")
        return _outcome_response(
            415, "not-supported", "Content-Encoding is not supported: send the FHIR JSON uncompressed"
        )
    if resource_type is None and is_ndjson(request.META.get("CONTENT_TYPE")):
        return _ingest_ndjson(request)
    # Refuse an oversized body from its declared length, before reading it into memory.
    declared = request.META.get("CONTENT_LENGTH") or "0"
    too_large = not declared.isdigit() or int(declared) > settings.FHIR_MAX_BODY_BYTES
    try:
        raw_body = b"" if too_large else request.body
    except RequestDataTooBig:
        too_large = True
    if too_large:
        fhir_request_refuse(request_id=request_id, status=413, reason="body_too_large")
        return _outcome_response(
            413, "too-costly", f"The request body exceeds the limit of {settings.FHIR_MAX_BODY_BYTES} bytes"
        )
    supplied_id = request.headers.get("X-Request-Id")
    answer: FhirResponse = fhir_request_ingest(
        request=IntakeRequest(
            principal=request.smart_principal,  # type: ignore[attr-defined]
            raw_body=raw_body,
            content_type=request.META.get("CONTENT_TYPE"),
            url_resource_type=resource_type,
            request_id=request_id,
            client_request_id=supplied_id
            if supplied_id and request_id_from_header(supplied_id) == supplied_id
            else None,
            if_none_exist=request.headers.get("If-None-Exist"),
            prefer=request.headers.get("Prefer"),
            base_url=f"{public_base_url(request)}/fhir",
        )
    )
    body = answer.body
    if answer.status == 201 and (request.headers.get("Prefer") or "").replace(" ", "") == "return=minimal":
        body = None
    return _fhir_response(answer.status, body, answer.headers)


def _ingest_ndjson(request: HttpRequest) -> HttpResponse:
    """``POST [base]`` of ``application/fhir+ndjson``: the body is read in chunks as it arrives, never whole."""
    request_id = request_id_of(request)
    principal = request.smart_principal  # type: ignore[attr-defined]
    actor = Actor.ehr_client(principal.client_id)
    declared = request.META.get("CONTENT_LENGTH") or ""
    if not declared.isdigit():
        fhir_request_refuse(request_id=request_id, status=411, reason="length_required", actor=actor)
        return _outcome_response(411, "required", "Content-Length is required for an NDJSON body")

    def chunks() -> Iterator[bytes]:
        while chunk := request.read(NDJSON_CHUNK_BYTES):
            yield chunk

    try:
        answer = ndjson_post_ingest(
            principal=principal, chunks=chunks(), declared_length=int(declared), request_id=request_id
        )
    except FhirError as err:
        fhir_request_refuse(request_id=request_id, status=err.status, reason=err.issues[0].code, actor=actor)
        return _fhir_response(err.status, operation_outcome(err.issues))
    return _fhir_response(answer.status, answer.body, answer.headers)


def with_search_allowed(response: HttpResponse) -> HttpResponse:
    """The intake endpoint's 405 for a ``[base]/{type}`` that is also searched here: Allow says so."""
    if response.status_code == 405:
        response["Allow"] = "GET, HEAD, POST"
    return response


@csrf_exempt
@smart_protected(on_refused=_audit_unauthenticated)
def system_endpoint(request: HttpRequest) -> HttpResponse:
    return _ingest(request, None)


@csrf_exempt
@smart_protected(on_refused=_audit_unauthenticated)
def type_endpoint(request: HttpRequest, resource_type: str) -> HttpResponse:
    return _ingest(request, resource_type)
