"""The FHIR R4 form of a clinician's decision on a suggestion: the suggestion's resources with their final
status, the resources the decision creates, and the Provenance that records who signed what and when.

Accepted (with or without changes): a RiskAssessment or DetectedIssue becomes ``final`` and a RequestGroup
``completed``; the RequestGroup's proposed Condition becomes a real Condition (a new id, deterministic per
suggestion) as the clinician confirmed it: verificationStatus ``confirmed`` unless they chose otherwise, and
still labelled AI-asserted (``AIAST``), since a model proposed it, with a note naming the human who
verified it. Rejected: RiskAssessment and DetectedIssue ``cancelled``, RequestGroup ``revoked``; nothing is
created, and the Provenance gives the coded reason.

The Provenance's signature is an HMAC-SHA256, keyed by a server secret, over the canonical JSON of its
targets (each without ``meta.versionId``/``meta.lastUpdated``, which the store sets). It proves to this
server that the targets are the ones signed; it is not a non-repudiable digital signature: anyone holding
the key could make one. Ids are uuid5 of the suggestion, so building twice gives identical resources.
How the signer was authenticated (a password typed at signing, a step-up sign-in at the hospital's
identity provider, the EHR's signed JWT) is the Provenance's ``policy`` and an extension of its signature.
No Django here.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from clinical_ai.fhir.dates import FhirDateError, fhir_datetime_text
from clinical_ai.inference.engine.fhir_output import (
    AI_ASSERTED,
    CONDITION_CLINICAL_SYSTEM,
    CONDITION_VER_STATUS_SYSTEM,
    PROPOSED_CONDITION_ID,
    SUGGESTION_SYSTEM,
)

Outcome = Literal["accepted", "modified", "rejected"]
OUTCOMES: tuple[Outcome, ...] = ("accepted", "modified", "rejected")

USER_SYSTEM = "urn:clinical-ai:user"
REJECTION_REASON_SYSTEM = "urn:clinical-ai:rejection-reason"
REJECTION_REASONS: dict[str, str] = {
    "not-clinically-relevant": "Not clinically relevant",
    "already-known": "Already known or already acted on",
    "data-wrong-or-stale": "The data it used is wrong or out of date",
    "disagree-with-evidence": "The evidence does not support it",
    "duplicate": "Duplicate of another suggestion or record",
    "other": "Other (see comment)",
}
CLINICAL_STATUSES: dict[str, str] = {
    "active": "Active",
    "recurrence": "Recurrence",
    "relapse": "Relapse",
    "inactive": "Inactive",
    "remission": "Remission",
    "resolved": "Resolved",
}
VERIFICATION_STATUSES: dict[str, str] = {
    "confirmed": "Confirmed",
    "provisional": "Provisional",
    "differential": "Differential",
}
PARTICIPANT_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
DATA_OPERATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
SIGNATURE_TYPE = {
    "system": "urn:iso-astm:E1762-95:2013",
    "code": "1.2.840.10065.1.12.1.5",
    "display": "Verification Signature",
}
# How the signer proved who they were at the moment of signing (docs/api.md, "How the signer was
# authenticated"): a signature policy per method in Provenance.policy, and the detail in an extension of
# Provenance.signature. The methods' codes are the Decision's ``signature_method``.
SIGNATURE_METHOD_SYSTEM = "urn:clinical-ai:signature-method"
SIGNATURE_METHODS: dict[str, str] = {
    "password": "Password typed at signing",
    "oidc-step-up": "Signed in again at the identity provider (OpenID Connect, prompt=login, max_age=0)",
    "cds-hooks-feedback": "Attested by the EHR's signed JWT (CDS Hooks feedback)",
}
SIGNATURE_POLICY_PREFIX = "urn:clinical-ai:signature-policy:"
SIGNER_AUTHENTICATION_EXTENSION = "urn:clinical-ai:signer-authentication"
# RFC 8176 authentication method reference values (amr), as registered with IANA.
AMR_SYSTEM = "https://www.iana.org/assignments/authentication-method-reference-values"
TARGET_FORMAT = "application/fhir+json"
SIG_FORMAT = "application/octet-stream"

# The final status of each resource type a suggestion carries, by outcome.
_ACCEPTED_STATUS = {"RiskAssessment": "final", "DetectedIssue": "final", "RequestGroup": "completed"}
_REJECTED_STATUS = {"RiskAssessment": "cancelled", "DetectedIssue": "cancelled", "RequestGroup": "revoked"}
# Where each type keeps free-text notes (DetectedIssue has none in R4).
_NOTED_TYPES = ("RiskAssessment", "RequestGroup", "Condition")
# Set by the store on every write: not part of what is signed.
_STORE_META = ("versionId", "lastUpdated")

# Fixed forever: changing it changes the ids of every decision's resources.
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:clinical-ai:fhir-decision")


class DecisionResourceError(ValueError):
    """The decision cannot be expressed as FHIR (no resources, an unknown outcome or code)."""


@dataclass(frozen=True)
class Verifier:
    """The clinician who signs: ``username`` identifies, ``display`` is shown (full name or username)."""

    username: str
    display: str
    organization_display: str

    def reference(self) -> dict[str, Any]:
        return {
            "type": "Practitioner",
            "identifier": {"system": USER_SYSTEM, "value": self.username},
            "display": self.display,
        }


@dataclass(frozen=True)
class SignerAuthentication:
    """How the signer was authenticated for this signature: ``method`` a SIGNATURE_METHODS code, ``at``
    when (the password check, the provider's ``auth_time``, the EHR's JWT check); for a step-up the
    provider's ``issuer`` and, when it sent them, ``acr`` and ``amr``."""

    method: str
    at: datetime  # aware
    issuer: str = ""
    acr: str = ""
    amr: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConditionEdit:
    """The clinician's version of a proposed Condition. ``code`` None keeps the proposal's code."""

    code: Mapping[str, str] | None = None  # {"system", "code", "display"}
    clinical_status: str = "active"
    verification_status: str = "confirmed"
    onset: str | None = None  # a FHIR date or dateTime


@dataclass(frozen=True)
class DecisionSpec:
    suggestion_id: str
    outcome: Outcome
    resources: Sequence[Mapping[str, Any]]  # the suggestion's own, as it carries them
    verifier: Verifier
    signed_at: datetime  # aware
    reason_code: str = ""
    comment: str = ""
    condition: ConditionEdit | None = None
    authentication: SignerAuthentication | None = None  # None: not said (decisions built before 0004)


@dataclass(frozen=True)
class DecisionResources:
    changed: list[dict[str, Any]]  # the suggestion's resources with their final status
    created: list[dict[str, Any]] = field(default_factory=list)  # e.g. the confirmed Condition
    provenance: dict[str, Any] = field(default_factory=dict)

    def all(self) -> list[dict[str, Any]]:
        """Every resource to store: the changed, the created, then the Provenance."""
        return [*self.changed, *self.created, self.provenance]


# --- signing --------------------------------------------------------------------------------------


def canonical_json(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode("utf-8")


def signature_content(resource: Mapping[str, Any]) -> dict[str, Any]:
    """A target as signed: without the version and time the store stamps on every write."""
    content = dict(resource)
    meta = content.get("meta")
    if isinstance(meta, Mapping):
        kept = {key: value for key, value in meta.items() if key not in _STORE_META}
        if kept:
            content["meta"] = kept
        else:
            content.pop("meta")
    return content


def provenance_signature(targets: Sequence[Mapping[str, Any]], *, key: bytes) -> str:
    """Base64 of HMAC-SHA256(key, canonical JSON of the targets in order). Integrity for this server only."""
    message = canonical_json([signature_content(target) for target in targets])
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode("ascii")


def _reference_of(resource: Mapping[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id')}"


def provenance_signature_verify(
    provenance: Mapping[str, Any], targets: Sequence[Mapping[str, Any]], *, key: bytes
) -> bool:
    """Whether ``targets`` (in any order, as stored) are exactly what ``provenance`` signed."""
    by_reference = {_reference_of(target): target for target in targets}
    wanted = [
        str(item.get("reference", "")) for item in provenance.get("target") or [] if isinstance(item, Mapping)
    ]
    if not wanted or set(wanted) != set(by_reference) or len(wanted) != len(by_reference):
        return False
    signatures = provenance.get("signature") or []
    data = signatures[0].get("data") if signatures and isinstance(signatures[0], Mapping) else None
    if not isinstance(data, str):
        return False
    expected = provenance_signature([by_reference[reference] for reference in wanted], key=key)
    return hmac.compare_digest(expected, data)


# --- the resources --------------------------------------------------------------------------------


def decision_resource_id(suggestion_id: str, resource_type: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{suggestion_id}|{resource_type}"))


def _datetime(value: datetime) -> str:
    try:
        return fhir_datetime_text(value)
    except FhirDateError as error:
        raise DecisionResourceError(f"the signing time cannot be written: {error}") from None


def _note(text: str, verifier: Verifier, when: str) -> dict[str, Any]:
    return {"authorString": verifier.display, "time": when, "text": text}


def _coded(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}]}


def _model_reference(resources: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The model's Device, as the suggestion's resources name it (performer or author)."""
    for resource in resources:
        for element in ("performer", "author"):
            reference = resource.get(element)
            if isinstance(reference, Mapping) and str(reference.get("reference", "")).startswith("Device/"):
                return dict(reference)
    return None


def _changed(spec: DecisionSpec, resource: Mapping[str, Any], when: str) -> dict[str, Any]:
    changed = copy.deepcopy(dict(resource))
    changed.pop("meta", None)  # the store's version stamp goes; the labels are put back below
    meta = resource.get("meta")
    if isinstance(meta, Mapping):
        kept = {key: copy.deepcopy(value) for key, value in meta.items() if key not in _STORE_META}
        if kept:
            changed["meta"] = kept
    statuses = _REJECTED_STATUS if spec.outcome == "rejected" else _ACCEPTED_STATUS
    changed["status"] = statuses[str(resource.get("resourceType"))]
    if spec.comment and changed["resourceType"] in _NOTED_TYPES:
        changed["note"] = [*changed.get("note", []), _note(spec.comment, spec.verifier, when)]
    return changed


def _proposed_condition(request_group: Mapping[str, Any]) -> dict[str, Any] | None:
    """The Condition the RequestGroup proposes: the one its action points at, else its first Condition."""
    conditions = [
        contained
        for contained in request_group.get("contained") or []
        if isinstance(contained, Mapping) and contained.get("resourceType") == "Condition"
    ]
    chosen = next((c for c in conditions if c.get("id") == PROPOSED_CONDITION_ID), None)
    chosen = chosen if chosen is not None else next(iter(conditions), None)
    return copy.deepcopy(dict(chosen)) if chosen is not None else None


def _condition(spec: DecisionSpec, request_group: Mapping[str, Any], when: str) -> dict[str, Any] | None:
    proposed = _proposed_condition(request_group)
    if proposed is None:
        return None
    edit = spec.condition or ConditionEdit()
    if edit.clinical_status not in CLINICAL_STATUSES:
        raise DecisionResourceError(f"unknown clinical status {edit.clinical_status!r}")
    if edit.verification_status not in VERIFICATION_STATUSES:
        raise DecisionResourceError(f"unknown verification status {edit.verification_status!r}")
    condition = {key: value for key, value in proposed.items() if key not in ("id", "meta")}
    labels = request_group.get("meta")
    meta: dict[str, Any] = {"security": [dict(AI_ASSERTED)]}
    if isinstance(labels, Mapping) and labels.get("tag"):
        meta["tag"] = copy.deepcopy(labels["tag"])
    condition.update(
        {
            "resourceType": "Condition",
            "id": decision_resource_id(spec.suggestion_id, "Condition"),
            "meta": meta,
            "identifier": [{"system": SUGGESTION_SYSTEM, "value": spec.suggestion_id}],
            "clinicalStatus": _coded(
                CONDITION_CLINICAL_SYSTEM, edit.clinical_status, CLINICAL_STATUSES[edit.clinical_status]
            ),
            "verificationStatus": _coded(
                CONDITION_VER_STATUS_SYSTEM,
                edit.verification_status,
                VERIFICATION_STATUSES[edit.verification_status],
            ),
            "recordedDate": when,
            "asserter": spec.verifier.reference(),
        }
    )
    if isinstance(request_group.get("subject"), Mapping):
        condition["subject"] = copy.deepcopy(request_group["subject"])
    if edit.code is not None:
        coding = {k: str(edit.code[k]) for k in ("system", "code", "display") if edit.code.get(k)}
        if not coding.get("system") or not coding.get("code"):
            raise DecisionResourceError("a condition code needs a system and a code")
        condition["code"] = {"coding": [coding], "text": coding.get("display", coding["code"])}
    if edit.onset:
        condition["onsetDateTime"] = edit.onset
    notes = list(condition.get("note") or [])
    notes.append({"time": when, "text": f"Verified by {spec.verifier.display}"})
    if spec.comment:
        notes.append(_note(spec.comment, spec.verifier, when))
    condition["note"] = notes
    return condition


def _signer_authentication(authentication: SignerAuthentication) -> dict[str, Any]:
    """The extension of Provenance.signature that says how the signer was authenticated."""
    parts: list[dict[str, Any]] = [
        {
            "url": "method",
            "valueCoding": {
                "system": SIGNATURE_METHOD_SYSTEM,
                "code": authentication.method,
                "display": SIGNATURE_METHODS[authentication.method],
            },
        },
        {"url": "authenticatedAt", "valueInstant": _datetime(authentication.at)},
    ]
    if authentication.issuer:
        parts.append({"url": "issuer", "valueUri": authentication.issuer})
    if authentication.acr:
        parts.append({"url": "acr", "valueString": authentication.acr})
    parts.extend(
        {"url": "amr", "valueCoding": {"system": AMR_SYSTEM, "code": amr}}
        for amr in authentication.amr
        if amr
    )
    return {"url": SIGNER_AUTHENTICATION_EXTENSION, "extension": parts}


def _provenance(
    spec: DecisionSpec, targets: Sequence[Mapping[str, Any]], when: str, *, key: bytes
) -> dict[str, Any]:
    verifier = spec.verifier.reference()
    agents: list[dict[str, Any]] = [
        {
            "type": _coded(PARTICIPANT_TYPE_SYSTEM, "verifier", "Verifier"),
            "who": verifier,
            "onBehalfOf": {"type": "Organization", "display": spec.verifier.organization_display},
        }
    ]
    device = _model_reference(spec.resources)
    if device is not None:
        agents.append({"type": _coded(PARTICIPANT_TYPE_SYSTEM, "author", "Author"), "who": device})
    creates = any(target.get("resourceType") == "Condition" for target in targets)
    verb = {"accepted": "Accepted", "modified": "Accepted with changes", "rejected": "Rejected"}[spec.outcome]
    provenance: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": decision_resource_id(spec.suggestion_id, "Provenance"),
        "target": [{"reference": _reference_of(target)} for target in targets],
        "recorded": when,
        "activity": {
            **(
                _coded(DATA_OPERATION_SYSTEM, "CREATE", "create")
                if creates
                else _coded(DATA_OPERATION_SYSTEM, "UPDATE", "revise")
            ),
            "text": f"{verb} by a clinician on review of an AI suggestion",
        },
        "agent": agents,
        "entity": [
            {
                "role": "source",
                "what": {
                    "identifier": {"system": SUGGESTION_SYSTEM, "value": spec.suggestion_id},
                    "display": "AI suggestion reviewed",
                },
            }
        ],
        "signature": [
            {
                "type": [dict(SIGNATURE_TYPE)],
                "when": when,
                "who": verifier,
                "targetFormat": TARGET_FORMAT,
                "sigFormat": SIG_FORMAT,
                "data": provenance_signature(targets, key=key),
            }
        ],
    }
    tags = next(
        (
            r["meta"]["tag"]
            for r in spec.resources
            if isinstance(r.get("meta"), Mapping) and r["meta"].get("tag")
        ),
        None,
    )
    if tags:
        provenance["meta"] = {"tag": copy.deepcopy(tags)}
    if spec.authentication is not None:
        provenance["policy"] = [f"{SIGNATURE_POLICY_PREFIX}{spec.authentication.method}"]
        provenance["signature"][0]["extension"] = [_signer_authentication(spec.authentication)]
    if spec.outcome == "rejected":
        provenance["reason"] = [
            _coded(REJECTION_REASON_SYSTEM, spec.reason_code, REJECTION_REASONS[spec.reason_code])
        ]
    return provenance


def _check(spec: DecisionSpec) -> None:
    if spec.authentication is not None and spec.authentication.method not in SIGNATURE_METHODS:
        raise DecisionResourceError(f"unknown signature method {spec.authentication.method!r}")
    if spec.outcome not in OUTCOMES:
        raise DecisionResourceError(f"unknown outcome {spec.outcome!r}")
    if spec.outcome == "rejected" and spec.reason_code not in REJECTION_REASONS:
        raise DecisionResourceError(f"unknown rejection reason {spec.reason_code!r}")
    if spec.outcome != "rejected" and spec.reason_code:
        raise DecisionResourceError("only a rejection carries a reason code")
    if not spec.resources:
        raise DecisionResourceError("the suggestion carries no resources to decide on")
    unknown = [r.get("resourceType") for r in spec.resources if r.get("resourceType") not in _ACCEPTED_STATUS]
    if unknown:
        raise DecisionResourceError(f"cannot decide on resources of type {unknown[0]!r}")


def decision_resources(spec: DecisionSpec, *, signing_key: bytes) -> DecisionResources:
    """The resources a decision changes and creates, and its signed Provenance; identical for identical
    input."""
    _check(spec)
    when = _datetime(spec.signed_at)
    changed = [_changed(spec, resource, when) for resource in spec.resources]
    created: list[dict[str, Any]] = []
    if spec.outcome != "rejected":
        for resource in spec.resources:
            if resource.get("resourceType") == "RequestGroup":
                condition = _condition(spec, resource, when)
                if condition is not None:
                    created.append(condition)
    provenance = _provenance(spec, [*changed, *created], when, key=signing_key)
    return DecisionResources(changed=changed, created=created, provenance=provenance)
