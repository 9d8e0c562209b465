"""The CDS services: discovery, a hook call (cards from the patient's suggestions, new data ingested like
intake and given a bounded wait), and feedback recorded as the suggestion's decision.

Thin views hand over the authenticated caller and the raw body; every answer is a ``CdsResponse``. Refusals
of the request (bad JSON, wrong context, no patient) are OperationOutcomes and change nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import NoReverseMatch, reverse

from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import audit_record
from clinical_ai.core.sealing import canonical_json
from clinical_ai.fhir.outcome import Issue, operation_outcome
from clinical_ai.fhir.validation_body import forbidden_character
from clinical_ai.fhir.validation_resource import validate_resource
from clinical_ai.inference.switched_off import models_switched_off
from clinical_ai.intake.models import IngestJob
from clinical_ai.intake.services import IntakeEntry, ingest_job_create
from clinical_ai.pipeline.web import decision_record
from clinical_ai.review.fhir_decision import REJECTION_REASON_SYSTEM, REJECTION_REASONS
from clinical_ai.review.models import Decision, Suggestion
from clinical_ai.review.services import suggestion_payload
from clinical_ai.review.signoff import SignOff, SignOffInvalid
from clinical_ai.vault.pseudonyms import patient_identity, patient_pseudonym
from integrations.cds_hooks import cards as card_builder
from integrations.cds_hooks.auth import CdsCaller
from integrations.cds_hooks.fetch import (
    Deadline,
    FetchFailed,
    FetchLimits,
    bundle_resources,
    fhir_get_paged,
    fhir_server_usable,
)
from integrations.cds_hooks.hooks import (
    SERVICES,
    SERVICES_BY_ID,
    FeedbackEntry,
    HookRequest,
    RequestInvalid,
    ServiceDefinition,
    feedback_parse,
    hook_request_parse,
    prefetch_render,
)
from integrations.cds_hooks.models import CardFeedback, CdsIssuer, IssuedCard
from integrations.cds_hooks.refresh import (
    REFRESH_ACTION,
    RefreshRead,
    patient_known,
    patient_refresh_fetch,
    refresh_resource_types,
)
from integrations.cds_hooks.selectors import ingest_job_settled, patient_pseudonyms, patient_suggestions

DISCOVERY_ACTION = "cds.discovery"
CALL_ACTION = "cds.service.call"
FEEDBACK_ACTION = "cds.feedback"
JSON_TYPES = ("application/json", "application/fhir+json")
POLL_SECONDS = 0.02
# Where the patient's record is linked: the elements group_by_patient follows (subject first).
_PATIENT_LINKS = ("subject", "patient", "beneficiary")


@dataclass(frozen=True)
class CdsResponse:
    status: int
    body: Mapping[str, Any] | None
    headers: Mapping[str, str] = field(default_factory=dict)


def _outcome(status: int, code: str, diagnostics: str, expression: str = "") -> CdsResponse:
    issue = Issue(code=code, diagnostics=diagnostics, expression=(expression,) if expression else ())
    return CdsResponse(status, operation_outcome([issue]))


def _parse_body(raw_body: bytes, content_type: str | None) -> Any:
    if (content_type or "").split(";")[0].strip().lower() not in JSON_TYPES:
        raise RequestInvalid("the body must be application/json", "")
    if len(raw_body) > settings.CDS_HOOKS_MAX_BODY_BYTES:
        raise RequestInvalid(f"the body is larger than {settings.CDS_HOOKS_MAX_BODY_BYTES} bytes", "")
    try:
        body = json.loads(raw_body)
    except (ValueError, RecursionError):
        raise RequestInvalid("the body is not valid JSON", "") from None
    forbidden = forbidden_character(body)
    if forbidden is not None:  # NUL would fail the database (a 500) wherever the value is stored or looked up
        raise RequestInvalid(f"the body contains {forbidden}", "")
    return body


# --- discovery ----------------------------------------------------------------------------------------


def cds_discovery(*, caller: CdsCaller, request_id: str) -> CdsResponse:
    audit_record(
        actor=caller.actor,
        action=DISCOVERY_ACTION,
        object_type="cds.issuer",
        object_id=str(caller.issuer.external_id),
        organization=caller.issuer.organization.slug,
        request_id=request_id,
        detail={"iss": caller.issuer.iss[:200], "sub": caller.token.sub[:200]},
    )
    return CdsResponse(200, {"services": [service.as_discovery() for service in SERVICES]})


def cds_service_lookup(service_id: str) -> ServiceDefinition | None:
    return SERVICES_BY_ID.get(service_id)


# --- the data a hook call brings or points to --------------------------------------------------------


@dataclass
class Gathered:
    patient: dict[str, Any] | None = None
    resources: list[dict[str, Any]] = field(default_factory=list)  # the patient's other records
    missing: list[str] = field(default_factory=list)  # prefetch keys neither sent nor fetched
    fetched: list[str] = field(default_factory=list)
    dropped: int = 0  # resources left out: not this patient's, or not valid FHIR R4
    pages: int = 0  # pages read from the fhirServer, all searches together
    truncated: list[str] = field(default_factory=list)  # "<prefetch key>:<why paging stopped>"
    seen: set[tuple[str, str]] = field(default_factory=set)  # (type, id) already taken


def _collect(gathered: Gathered, collected: list[dict[str, Any]], patient_id: str) -> None:
    """Take the resources read for the patient into ``gathered``: each (type, id) once, the patient's own
    Patient when valid, every other resource only when it is linked to this patient."""
    for resource in collected:
        resource_type, resource_id = str(resource.get("resourceType")), str(resource.get("id") or "")
        if resource_id and (resource_type, resource_id) in gathered.seen:
            continue
        if resource_id:
            gathered.seen.add((resource_type, resource_id))
        if resource_type == "Patient":
            if resource_id == patient_id and gathered.patient is None:
                if validate_resource(resource):
                    gathered.dropped += 1
                else:
                    gathered.patient = resource
            continue
        linked = _for_patient(resource, patient_id)
        if linked is None:
            gathered.dropped += 1
        else:
            gathered.resources.append(linked)


def _for_patient(resource: dict[str, Any], patient_id: str) -> dict[str, Any] | None:
    """The resource with its patient link made relative (``Patient/<id>``), or None when it is not linked
    to this patient (another patient's record must never be ingested under this one)."""
    wanted = f"Patient/{patient_id}"
    for link in _PATIENT_LINKS:
        value = resource.get(link)
        if isinstance(value, Mapping) and isinstance(value.get("reference"), str):
            reference = str(value["reference"])
            if reference == wanted:
                return resource
            if reference.endswith("/" + wanted):
                return {**resource, link: {**value, "reference": wanted}}
            return None
    return None


def fetch_limits() -> FetchLimits:
    """This installation's limits on one paged read from an EHR's fhirServer (settings CDS_FETCH_*)."""
    return FetchLimits(
        max_pages=settings.CDS_FETCH_MAX_PAGES,
        max_resources=settings.CDS_FETCH_MAX_RESOURCES,
        request_timeout_seconds=settings.CDS_HOOKS_FHIR_FETCH_TIMEOUT_SECONDS,
    )


def _can_fetch(request: HookRequest, allowed_servers: Sequence[str]) -> bool:
    return (
        request.fhir_authorization is not None
        and request.fhir_server is not None
        and fhir_server_usable(request.fhir_server, allowed=allowed_servers)
    )


def _gather(
    request: HookRequest, service: ServiceDefinition, allowed_servers: Sequence[str], deadline: Deadline
) -> Gathered:
    gathered = Gathered()
    collected: list[dict[str, Any]] = []
    for value in request.prefetch.values():
        if isinstance(value, Mapping):
            collected.extend(bundle_resources(value))
    can_fetch = _can_fetch(request, allowed_servers)
    for key, template in service.prefetch.items():
        if request.prefetch.get(key) is not None:
            continue
        if key == "patient" and any(
            r.get("resourceType") == "Patient" and r.get("id") == request.patient_id for r in collected
        ):
            continue  # the EHR sent the patient under another key
        if not can_fetch:
            gathered.missing.append(key)
            continue
        assert request.fhir_authorization is not None and request.fhir_server is not None
        try:
            read = fhir_get_paged(
                fhir_server=request.fhir_server,
                path=prefetch_render(template, context=request.context),
                access_token=request.fhir_authorization.access_token,
                limits=fetch_limits(),
                deadline=deadline,
            )
        except FetchFailed:
            gathered.missing.append(key)
            continue
        gathered.pages += read.pages
        if read.document is None:
            gathered.missing.append(key)
            continue
        if read.truncated:
            gathered.truncated.append(f"{key}:{read.stopped}")
        gathered.fetched.append(key)
        collected.extend(bundle_resources(read.document))

    _collect(gathered, collected, request.patient_id)
    return gathered


def _refresh(
    request: HookRequest, issuer: CdsIssuer, gathered: Gathered, deadline: Deadline
) -> RefreshRead | None:
    """For a patient the gateway has not seen: their record read from the fhirServer (integrations.
    cds_hooks.refresh) on what is left of this call's read budget, taken in with the prefetch data."""
    if not _can_fetch(request, issuer.fhir_servers or []) or deadline.remaining() <= 0:
        return None
    if patient_known(organization=issuer.organization, patient_id=request.patient_id):
        return None
    assert request.fhir_authorization is not None and request.fhir_server is not None
    refreshed = patient_refresh_fetch(
        fhir_server=request.fhir_server,
        patient_id=request.patient_id,
        access_token=request.fhir_authorization.access_token,
        resource_types=refresh_resource_types(),
        limits=fetch_limits(),
        deadline=deadline,
    )
    _collect(gathered, refreshed.resources, request.patient_id)
    return refreshed


# --- ingesting new data ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ingested:
    job_pk: int
    job_id: str
    resource_count: int
    created: bool


def _ingest(caller: CdsCaller, gathered: Gathered, request_id: str) -> Ingested | None:
    """New data of the patient goes through intake exactly as a FHIR POST would (sealed, audited, queued
    on commit for de-identification and the models). The same data twice is one job."""
    if gathered.patient is None or not gathered.resources:
        return None
    documents = sorted(gathered.resources, key=lambda r: (str(r.get("resourceType")), str(r.get("id") or "")))
    input_sha256 = hashlib.sha256(canonical_json([gathered.patient, *documents])).hexdigest()
    issuer = caller.issuer
    key = hashlib.sha256(f"cds-hooks:{issuer.pk}:{input_sha256}".encode()).hexdigest()
    existing = IngestJob.objects.filter(client_id=issuer.ehr_client_id, idempotency_key_sha256=key).first()
    if existing is not None:
        return Ingested(existing.pk, str(existing.external_id), existing.resource_count, created=False)
    valid = [r for r in documents if not validate_resource(r)]
    gathered.dropped += len(documents) - len(valid)
    if not valid:
        return None
    entries = [
        IntakeEntry(
            external_id=uuid.uuid4(),
            entry_index=index,
            resource_type=str(resource["resourceType"]),
            document={
                "fullUrl": None,
                "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}
                if resource.get("id")
                else {"method": "POST", "url": str(resource["resourceType"])},
                "resource": resource,
            },
        )
        for index, resource in enumerate([gathered.patient, *valid])
    ]
    try:
        job = ingest_job_create(
            actor=caller.actor,
            client_pk=issuer.ehr_client_id,
            organization_pk=issuer.organization_id,
            organization_slug=issuer.organization.slug,
            kind=IngestJob.Kind.BATCH,
            entries=entries,
            request_id=request_id,
            idempotency_key_sha256=key,
            input_sha256=input_sha256,
            response_status=200,
            response_body={"resourceType": "OperationOutcome", "issue": []},
        )
    except IntegrityError:  # the same data raced in from a concurrent call
        raced = IngestJob.objects.get(client_id=issuer.ehr_client_id, idempotency_key_sha256=key)
        return Ingested(raced.pk, str(raced.external_id), raced.resource_count, created=False)
    return Ingested(job.pk, str(job.external_id), len(entries), created=True)


def _wait_settled(job_pk: int, budget_ms: int) -> bool:
    deadline = time.monotonic() + budget_ms / 1000
    while True:
        if ingest_job_settled(job_pk):
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(POLL_SECONDS, remaining))


# --- cards --------------------------------------------------------------------------------------------


def _model_card_url(site_base_url: str, model_id: str) -> str:
    try:
        return site_base_url + reverse("inference:model_detail", kwargs={"model_id": model_id})
    except NoReverseMatch:
        return site_base_url + reverse("inference:model_list")


def _cards(
    caller: CdsCaller,
    service: ServiceDefinition,
    request: HookRequest,
    pseudonyms: Sequence[str],
    site_base_url: str,
) -> tuple[list[dict[str, Any]], list[IssuedCard]]:
    issuer = caller.issuer
    rows = patient_suggestions(
        organization_id=issuer.organization_id,
        pseudonyms=pseudonyms,
        urgencies=service.urgencies,
        limit=settings.CDS_HOOKS_MAX_CARDS,
    )
    cards: list[dict[str, Any]] = []
    issued: list[IssuedCard] = []
    for suggestion, decision in rows:
        payload = suggestion_payload(suggestion)
        model = payload.get("model") if isinstance(payload.get("model"), Mapping) else {}
        assert isinstance(model, Mapping)
        card_id = card_builder.card_uuid(
            issuer_id=str(issuer.external_id), suggestion_id=str(suggestion.external_id)
        )
        cards.append(
            card_builder.suggestion_card(
                card_builder.CardSource(
                    card_uuid=card_id,
                    kind=suggestion.kind,
                    urgency=suggestion.urgency,
                    status=str(suggestion.status),
                    model_id=suggestion.model_id,
                    model_version=suggestion.model_version,
                    model_name=str(model.get("name") or suggestion.model_id),
                    payload=payload,
                    review_url=site_base_url
                    + reverse("review:suggestion", kwargs={"external_id": suggestion.external_id}),
                    model_card_url=_model_card_url(site_base_url, suggestion.model_id),
                    patient_reference=f"Patient/{request.patient_id}",
                    decided_by=decision.clinician_display if decision else "",
                    decided_at=decision.signed_at if decision else None,
                    launch_url=site_base_url + reverse("smart:launch"),
                    suggestion_id=str(suggestion.external_id),
                )
            )
        )
        issued.append(IssuedCard(card_uuid=card_id, issuer=issuer, suggestion=suggestion))
    return cards, issued


def _models_off_cards(service: ServiceDefinition, site_base_url: str) -> list[dict[str, Any]]:
    """A card for each switched-off model that would have answered this hook (it could give one of the
    urgencies the service shows): its silence here must not read as "nothing to report"."""
    return [
        card_builder.model_off_card(
            model_id=model.model_id,
            model_name=model.name,
            since=model.since,
            reason=model.reason,
            gives_scores=model.gives_scores,
            model_card_url=_model_card_url(site_base_url, model.model_id),
        )
        for model in models_switched_off()
        if model.urgencies & set(service.urgencies)
    ]


def cds_service_call(
    *,
    caller: CdsCaller,
    service: ServiceDefinition,
    raw_body: bytes,
    content_type: str | None,
    request_id: str,
    site_base_url: str,
) -> CdsResponse:
    """Answer one hook call with cards. 400 for a malformed request, 412 when the patient's record is
    neither in the prefetch nor obtainable from the fhirServer. Audited either way."""
    issuer = caller.issuer
    started = time.monotonic()

    def refuse(response: CdsResponse, reason: str, hook_instance: str = "") -> CdsResponse:
        audit_record(
            actor=caller.actor,
            action=CALL_ACTION,
            outcome=Outcome.FAILURE,
            object_type="cds.service",
            object_id=service.id,
            organization=issuer.organization.slug,
            request_id=request_id,
            detail={"status": response.status, "reason": reason, "hook_instance": hook_instance[:64]},
        )
        return response

    try:
        request = hook_request_parse(_parse_body(raw_body, content_type), service=service)
    except RequestInvalid as exc:
        return refuse(_outcome(400, "invalid", str(exc), exc.path), "invalid-request")

    # One time budget for every read of this call (prefetch and refresh): the EHR is waiting for the cards.
    deadline = Deadline(settings.CDS_FETCH_MAX_SECONDS)
    gathered = _gather(request, service, issuer.fhir_servers or [], deadline)
    if gathered.patient is None:
        return refuse(
            _outcome(
                412,
                "not-found",
                "The patient's record is needed: send prefetch 'patient' (Patient/{{context.patientId}}) or a "
                "fhirServer registered for this EHR with a fhirAuthorization that can read it",
                "prefetch.patient",
            ),
            "patient-unavailable",
            request.hook_instance,
        )
    pseudonyms = patient_pseudonyms(issuer=issuer, patient_id=request.patient_id, patient=gathered.patient)
    primary = patient_pseudonym(
        key=settings.PSEUDONYM_KEY.encode("utf-8"),
        organization=issuer.organization.slug,
        identity=patient_identity(gathered.patient, None),
    )
    refreshed = _refresh(request, issuer, gathered, deadline)
    ingested = _ingest(caller, gathered, request_id)
    settled = True
    if ingested is not None:
        spent_ms = (time.monotonic() - started) * 1000
        settled = _wait_settled(ingested.job_pk, max(0, int(settings.CDS_HOOKS_MODEL_BUDGET_MS - spent_ms)))

    cards, issued = _cards(caller, service, request, pseudonyms, site_base_url)
    cards = card_builder.cards_order(cards)
    models_off = _models_off_cards(service, site_base_url)
    cards.extend(models_off)
    if not settled and ingested is not None:
        cards.append(
            card_builder.progress_card(
                resource_count=ingested.resource_count,
                review_queue_url=site_base_url + reverse("review:queue"),
            )
        )
    with transaction.atomic():
        if issued:
            IssuedCard.objects.bulk_create(issued, ignore_conflicts=True)
        if refreshed is not None:
            audit_record(
                actor=caller.actor,
                action=REFRESH_ACTION,
                # Nothing read at all (every read failed or the budget was spent first) is a failure.
                outcome=Outcome.SUCCESS if refreshed.resources else Outcome.FAILURE,
                object_type="cds.service",
                object_id=service.id,
                organization=issuer.organization.slug,
                patient_pseudonym=primary,
                request_id=request_id,
                detail={
                    **refreshed.audit_detail(),
                    "hook_instance": request.hook_instance[:64],
                    "ingest_job": ingested.job_id if ingested else None,
                },
            )
        audit_record(
            actor=caller.actor,
            action=CALL_ACTION,
            object_type="cds.service",
            object_id=service.id,
            organization=issuer.organization.slug,
            patient_pseudonym=primary,
            request_id=request_id,
            detail={
                "hook": service.hook,
                "hook_instance": request.hook_instance[:64],
                "sub": caller.token.sub[:200],
                "cards": len(cards),
                "pending_cards": sum(1 for c in cards if str(c["summary"]).startswith("Pending")),
                "ingest_job": ingested.job_id if ingested else None,
                "ingest_job_created": ingested.created if ingested else False,
                "settled": settled,
                "models_off_cards": len(models_off),
                "missing_prefetch": gathered.missing,
                "fetched": gathered.fetched,
                "fetched_pages": gathered.pages,
                "fetch_truncated": gathered.truncated,
                "refreshed": refreshed is not None,
                "dropped_resources": gathered.dropped,
                "elapsed_ms": round((time.monotonic() - started) * 1000),
            },
        )
    return CdsResponse(200, {"cards": cards})


# --- feedback -----------------------------------------------------------------------------------------


def _override_sign_off(entry: FeedbackEntry, caller: CdsCaller) -> SignOff:
    reason = entry.override_reason
    code = "other"
    if (
        reason is not None
        and reason.code in REJECTION_REASONS
        and reason.system in ("", REJECTION_REASON_SYSTEM)
    ):
        code = reason.code
    parts = [f"Overridden in the EHR ({caller.issuer.name}) through CDS Hooks"]
    if reason is not None and reason.code and code == "other":
        parts.append(f"reason {reason.display or reason.code} ({reason.system or 'no system'})")
    if reason is not None and reason.comment:
        parts.append(f"comment: {reason.comment}")
    return SignOff(outcome="rejected", reason_code=code, comment="; ".join(parts)[:2000])


def _record(caller: CdsCaller, card: IssuedCard, entry: FeedbackEntry, request_id: str) -> CardFeedback:
    """One entry, in the caller's transaction: the decision when the suggestion is still pending."""
    existing = CardFeedback.objects.filter(card=card, outcome=entry.outcome).first()
    if existing is not None:
        return existing  # the same feedback again: already recorded
    suggestion = (
        Suggestion.objects.select_for_update().select_related("organization").get(pk=card.suggestion_id)
    )
    decision: Decision | None = None
    if (
        suggestion.status == Suggestion.Status.PENDING
        and not Decision.objects.filter(suggestion=suggestion).exists()
    ):
        sign_off = (
            SignOff(
                outcome="accepted",
                comment=(
                    f"Accepted in the EHR ({caller.issuer.name}) through CDS Hooks; attested by the EHR's "
                    f"signed JWT (sub {caller.token.sub[:100]}), not by a password signature here"
                ),
            )
            if entry.outcome == "accepted"
            else _override_sign_off(entry, caller)
        )
        # pipeline.decision_record (review.signoff) is the one place a decision, its FHIR resources, Provenance,
        # push jobs and the review.decision.sign audit row are written; it expects the row locked and pending
        # (as here). The signer is the issuer's service account ("EHR user via <issuer>").
        decision = decision_record(
            suggestion=suggestion, user=caller.issuer.feedback_user, sign_off=sign_off, request_id=request_id
        )
    feedback = CardFeedback.objects.create(
        card=card,
        outcome=entry.outcome,
        accepted_suggestions=[str(s) for s in entry.accepted_suggestions],
        override_reason_code=(entry.override_reason.code if entry.override_reason else "")[:64],
        outcome_timestamp=entry.outcome_timestamp,
        result=CardFeedback.Result.DECIDED if decision else CardFeedback.Result.ALREADY_DECIDED,
        decision=decision,
    )
    audit_record(
        actor=caller.actor,
        action=FEEDBACK_ACTION,
        object_type="Suggestion",
        object_id=str(suggestion.external_id),
        organization=suggestion.organization.slug,
        patient_pseudonym=suggestion.patient_pseudonym,
        request_id=request_id,
        detail={
            "card": str(card.card_uuid),
            "outcome": entry.outcome,
            "result": feedback.result,
            "decision": str(decision.external_id) if decision else None,
            "override_reason": feedback.override_reason_code,
            "sub": caller.token.sub[:200],
        },
    )
    return feedback


def cds_feedback_record(
    *,
    caller: CdsCaller,
    service: ServiceDefinition,
    raw_body: bytes,
    content_type: str | None,
    request_id: str,
) -> CdsResponse:
    """Record feedback on cards this EHR was shown: ``accepted`` signs the pending suggestion off as
    accepted, ``overridden`` as rejected (with the override reason), both attributed to the EHR's user
    through the issuer's service account. Repeated feedback changes nothing. All entries or none."""

    def refuse(response: CdsResponse, reason: str) -> CdsResponse:
        audit_record(
            actor=caller.actor,
            action=FEEDBACK_ACTION,
            outcome=Outcome.FAILURE,
            object_type="cds.service",
            object_id=service.id,
            organization=caller.issuer.organization.slug,
            request_id=request_id,
            detail={"status": response.status, "reason": reason},
        )
        return response

    try:
        entries = feedback_parse(_parse_body(raw_body, content_type))
    except RequestInvalid as exc:
        return refuse(_outcome(400, "invalid", str(exc), exc.path), "invalid-request")
    cards = {
        card.card_uuid: card
        for card in IssuedCard.objects.filter(
            issuer=caller.issuer, card_uuid__in=[entry.card for entry in entries]
        )
    }
    for index, entry in enumerate(entries):
        card = cards.get(entry.card)
        if card is None:
            return refuse(
                _outcome(
                    404,
                    "not-found",
                    "No card with this uuid was issued to this EHR",
                    f"feedback[{index}].card",
                ),
                "unknown-card",
            )
        expected = card_builder.accept_suggestion_uuid(card.card_uuid)
        if any(accepted != expected for accepted in entry.accepted_suggestions):
            return refuse(
                _outcome(
                    400,
                    "invalid",
                    "acceptedSuggestions names a suggestion this card does not have",
                    f"feedback[{index}].acceptedSuggestions",
                ),
                "unknown-suggestion",
            )
    try:
        with transaction.atomic():
            for entry in entries:
                _record(caller, cards[entry.card], entry, request_id)
    except IntegrityError:
        # The same feedback raced in from a concurrent request and was recorded there.
        if not all(
            CardFeedback.objects.filter(card=cards[e.card], outcome=e.outcome).exists() for e in entries
        ):
            raise
    except SignOffInvalid as exc:
        return refuse(
            _outcome(422, "processing", f"The decision cannot be recorded: {exc}"), "invalid-decision"
        )
    return CdsResponse(200, {})
