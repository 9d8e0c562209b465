"""The CDS services offered here and the shapes of what the EHR sends them, as plain Python: discovery
entries, the hook request (``hook``, ``hookInstance``, ``context`` per hook, ``fhirServer`` with
``fhirAuthorization``, ``prefetch``) and the feedback body. Parsers raise ``RequestInvalid`` with the path
of the first problem; nothing here quotes submitted values back (they may be PHI)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from clinical_ai.fhir.dates import FhirDateError, parse_fhir_date_time

PATIENT_TEMPLATE = "Patient/{{context.patientId}}"
VITALS_TEMPLATE = "Observation?patient={{context.patientId}}&category=vital-signs&_sort=-date&_count=50"
CONDITIONS_TEMPLATE = "Condition?patient={{context.patientId}}&clinical-status=active&_count=100"
NOTES_TEMPLATE = "DocumentReference?patient={{context.patientId}}&_sort=-date&_count=5"
USAGE = (
    "Send the prefetch (or a fhirServer with fhirAuthorization granting read access to Patient, "
    "Observation, Condition and DocumentReference); without the patient the service answers 412. Cards "
    "show this gateway's model suggestions for the patient: pending ones need a clinician's sign-off. "
    "Register the EHR first (manage.py register_cds_issuer) and sign every call with an RS384 or ES384 JWT."
)


@dataclass(frozen=True)
class ServiceDefinition:
    id: str
    hook: str
    title: str
    description: str
    prefetch: Mapping[str, str]
    required_context: tuple[str, ...]
    # Which suggestions the service shows: every urgency, or only those that should interrupt the order.
    urgencies: tuple[str, ...] = ("critical", "warning", "info")

    def as_discovery(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "hook": self.hook,
            "title": self.title,
            "description": self.description,
            "prefetch": dict(self.prefetch),
            "usageRequirements": USAGE,
        }


_FULL_PREFETCH = {
    "patient": PATIENT_TEMPLATE,
    "vitals": VITALS_TEMPLATE,
    "conditions": CONDITIONS_TEMPLATE,
    "notes": NOTES_TEMPLATE,
}
SERVICES: tuple[ServiceDefinition, ...] = (
    ServiceDefinition(
        id="clinical-ai-patient-view",
        hook="patient-view",
        title="Clinical AI: risk scores and problem-list gaps",
        description=(
            "Early-warning scores and problems documented in notes but missing from the problem list, "
            "from models run on a de-identified copy of the record; each pending until a clinician signs off."
        ),
        prefetch=_FULL_PREFETCH,
        required_context=("userId", "patientId"),
    ),
    ServiceDefinition(
        id="clinical-ai-order-select",
        hook="order-select",
        title="Clinical AI: warnings while ordering",
        description="Critical and warning-level model findings for the patient while orders are selected.",
        prefetch={"patient": PATIENT_TEMPLATE, "vitals": VITALS_TEMPLATE},
        required_context=("userId", "patientId", "selections", "draftOrders"),
        urgencies=("critical", "warning"),
    ),
    ServiceDefinition(
        id="clinical-ai-order-sign",
        hook="order-sign",
        title="Clinical AI: warnings before signing orders",
        description="Critical and warning-level model findings for the patient before orders are signed.",
        prefetch={"patient": PATIENT_TEMPLATE, "vitals": VITALS_TEMPLATE},
        required_context=("userId", "patientId", "draftOrders"),
        urgencies=("critical", "warning"),
    ),
    ServiceDefinition(
        id="clinical-ai-encounter-discharge",
        hook="encounter-discharge",
        title="Clinical AI: open findings at discharge",
        description="Model findings still pending review and problem-list gaps, before the patient leaves.",
        prefetch=_FULL_PREFETCH,
        required_context=("userId", "patientId", "encounterId"),
    ),
)
SERVICES_BY_ID: dict[str, ServiceDefinition] = {service.id: service for service in SERVICES}


class RequestInvalid(ValueError):
    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class FhirAuthorization:
    access_token: str = field(repr=False)  # never logged, never stored
    token_type: str
    expires_in: int
    scope: str
    subject: str


@dataclass(frozen=True)
class HookRequest:
    hook: str
    hook_instance: str
    user_id: str
    patient_id: str
    encounter_id: str | None
    context: Mapping[str, Any]
    fhir_server: str | None
    fhir_authorization: FhirAuthorization | None = field(repr=False)
    prefetch: Mapping[str, Any]  # key -> resource / Bundle / None (the EHR could not fetch it)


def _string(value: Any, path: str, *, max_length: int = 1024) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RequestInvalid(f"{path} must be a non-empty string", path)
    if len(value) > max_length:
        raise RequestInvalid(f"{path} is longer than {max_length} characters", path)
    return value


def _fhir_authorization(value: Any) -> FhirAuthorization:
    if not isinstance(value, Mapping):
        raise RequestInvalid("fhirAuthorization must be an object", "fhirAuthorization")
    token_type = _string(value.get("token_type"), "fhirAuthorization.token_type", max_length=16)
    if token_type.lower() != "bearer":
        raise RequestInvalid("fhirAuthorization.token_type must be Bearer", "fhirAuthorization.token_type")
    expires_in = value.get("expires_in")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in <= 0:
        raise RequestInvalid(
            "fhirAuthorization.expires_in must be a positive integer", "fhirAuthorization.expires_in"
        )
    return FhirAuthorization(
        access_token=_string(value.get("access_token"), "fhirAuthorization.access_token", max_length=8192),
        token_type="Bearer",  # noqa: S106 - the RFC 6750 token type, not a secret
        expires_in=expires_in,
        scope=_string(value.get("scope"), "fhirAuthorization.scope", max_length=4096),
        subject=_string(value.get("subject"), "fhirAuthorization.subject"),
    )


def hook_request_parse(body: Any, *, service: ServiceDefinition) -> HookRequest:
    """Check a service call's body against CDS Hooks 2.0 and the service's hook."""
    if not isinstance(body, Mapping):
        raise RequestInvalid("the request body must be a JSON object", "")
    hook = _string(body.get("hook"), "hook", max_length=64)
    if hook != service.hook:
        raise RequestInvalid(f"this service answers the {service.hook} hook", "hook")
    hook_instance = _string(body.get("hookInstance"), "hookInstance", max_length=64)
    context = body.get("context")
    if not isinstance(context, Mapping):
        raise RequestInvalid("context must be an object", "context")
    for name in service.required_context:
        if context.get(name) is None:
            raise RequestInvalid(f"context.{name} is required for {service.hook}", f"context.{name}")
    user_id = _string(context.get("userId"), "context.userId")
    patient_id = _string(context.get("patientId"), "context.patientId", max_length=64)
    encounter = context.get("encounterId")
    encounter_id = _string(encounter, "context.encounterId", max_length=64) if encounter is not None else None
    if "draftOrders" in service.required_context:
        orders = context.get("draftOrders")
        if not isinstance(orders, Mapping) or orders.get("resourceType") != "Bundle":
            raise RequestInvalid("context.draftOrders must be a FHIR Bundle", "context.draftOrders")
    if "selections" in service.required_context:
        selections = context.get("selections")
        if not isinstance(selections, list) or not all(isinstance(s, str) for s in selections):
            raise RequestInvalid("context.selections must be an array of strings", "context.selections")

    fhir_server = body.get("fhirServer")
    if fhir_server is not None:
        fhir_server = _string(fhir_server, "fhirServer", max_length=500)
    authorization = None
    if body.get("fhirAuthorization") is not None:
        if fhir_server is None:
            raise RequestInvalid("fhirAuthorization requires fhirServer", "fhirServer")
        authorization = _fhir_authorization(body["fhirAuthorization"])
    prefetch = body.get("prefetch")
    if prefetch is None:
        prefetch = {}
    if not isinstance(prefetch, Mapping):
        raise RequestInvalid("prefetch must be an object", "prefetch")
    for key, value in prefetch.items():
        if value is not None and not isinstance(value, Mapping):
            raise RequestInvalid("each prefetch value must be a FHIR resource or null", f"prefetch.{key}")
    return HookRequest(
        hook=hook,
        hook_instance=hook_instance,
        user_id=user_id,
        patient_id=patient_id,
        encounter_id=encounter_id,
        context=context,
        fhir_server=fhir_server,
        fhir_authorization=authorization,
        prefetch=prefetch,
    )


def prefetch_render(template: str, *, context: Mapping[str, Any]) -> str:
    """A prefetch template with its ``{{context.name}}`` tokens filled in (URL-encoded)."""
    rendered = template
    for name in ("patientId", "userId", "encounterId"):
        value = context.get(name)
        if isinstance(value, str):
            rendered = rendered.replace("{{context." + name + "}}", quote(value, safe=""))
    return rendered


# --- feedback ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OverrideReason:
    code: str
    system: str
    display: str
    comment: str


@dataclass(frozen=True)
class FeedbackEntry:
    card: uuid.UUID
    outcome: str  # accepted | overridden
    accepted_suggestions: tuple[uuid.UUID, ...]
    override_reason: OverrideReason | None
    outcome_timestamp: datetime


def _uuid(value: Any, path: str) -> uuid.UUID:
    text = _string(value, path, max_length=64)
    if text.startswith("urn:uuid:"):
        text = text[len("urn:uuid:") :]
    try:
        return uuid.UUID(text)
    except ValueError:
        raise RequestInvalid(f"{path} must be a UUID", path) from None


def _override_reason(value: Any, path: str) -> OverrideReason:
    if not isinstance(value, Mapping):
        raise RequestInvalid(f"{path} must be an object", path)
    reason = value.get("reason")
    comment = value.get("userComment")
    if reason is None and comment is None:
        # cds-fb-3: a reason, a userComment, or both.
        raise RequestInvalid(f"{path} needs a reason or a userComment (cds-fb-3)", path)
    if comment is not None and not isinstance(comment, str):
        raise RequestInvalid(f"{path}.userComment must be a string", f"{path}.userComment")
    code = system = display = ""
    if reason is not None:
        if not isinstance(reason, Mapping):
            raise RequestInvalid(f"{path}.reason must be a Coding", f"{path}.reason")
        code = _string(reason.get("code"), f"{path}.reason.code", max_length=64)
        system = str(reason.get("system") or "")[:500]
        display = str(reason.get("display") or "")[:500]
    return OverrideReason(code=code, system=system, display=display, comment=(comment or "")[:2000])


def feedback_parse(body: Any, *, max_entries: int = 100) -> list[FeedbackEntry]:
    """The entries of a feedback POST, checked against cds-fb-1..3 and the element cardinalities."""
    if not isinstance(body, Mapping) or not isinstance(body.get("feedback"), list):
        raise RequestInvalid('the body must be an object with a "feedback" array', "feedback")
    items: Sequence[Any] = body["feedback"]
    if not items or len(items) > max_entries:
        raise RequestInvalid(f"feedback must hold 1 to {max_entries} entries", "feedback")
    entries: list[FeedbackEntry] = []
    for index, item in enumerate(items):
        path = f"feedback[{index}]"
        if not isinstance(item, Mapping):
            raise RequestInvalid(f"{path} must be an object", path)
        card = _uuid(item.get("card"), f"{path}.card")
        outcome = item.get("outcome")
        if outcome not in ("accepted", "overridden"):
            raise RequestInvalid(f"{path}.outcome must be accepted or overridden", f"{path}.outcome")
        accepted_raw = item.get("acceptedSuggestions")
        if outcome == "accepted":
            # cds-fb-2: an acceptance names the suggestions accepted.
            if not isinstance(accepted_raw, list) or not accepted_raw:
                raise RequestInvalid(
                    f"{path}.acceptedSuggestions is required when accepted (cds-fb-2)",
                    f"{path}.acceptedSuggestions",
                )
            if item.get("overrideReason") is not None:
                raise RequestInvalid(
                    f"{path}.overrideReason is only for overridden cards (cds-fb-1)", f"{path}.overrideReason"
                )
        elif accepted_raw is not None:
            raise RequestInvalid(
                f"{path}.acceptedSuggestions is only for accepted cards (cds-fb-1)",
                f"{path}.acceptedSuggestions",
            )
        accepted = tuple(
            _uuid(s.get("id") if isinstance(s, Mapping) else None, f"{path}.acceptedSuggestions[{i}].id")
            for i, s in enumerate(accepted_raw or [])
        )
        override = (
            _override_reason(item["overrideReason"], f"{path}.overrideReason")
            if item.get("overrideReason") is not None
            else None
        )
        stamp_text = _string(item.get("outcomeTimestamp"), f"{path}.outcomeTimestamp", max_length=64)
        try:
            stamp = parse_fhir_date_time(stamp_text)
        except FhirDateError:
            raise RequestInvalid(
                f"{path}.outcomeTimestamp must be an instant", f"{path}.outcomeTimestamp"
            ) from None
        if not stamp.zoned:
            raise RequestInvalid(
                f"{path}.outcomeTimestamp must carry a time zone", f"{path}.outcomeTimestamp"
            )
        entries.append(
            FeedbackEntry(
                card=card,
                outcome=str(outcome),
                accepted_suggestions=accepted,
                override_reason=override,
                outcome_timestamp=stamp.start,
            )
        )
    return entries
