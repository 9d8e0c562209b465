"""A signed decision as the suggestion page shows it, and the check that its sealed payload is what was
signed."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clinical_ai.core.sealing import canonical_json, open_json
from clinical_ai.review.fhir_decision import CLINICAL_STATUSES, REJECTION_REASONS, VERIFICATION_STATUSES
from clinical_ai.review.models import Decision
from clinical_ai.review.selectors.evidence import text_of


@dataclass(frozen=True)
class DecisionView:
    decision: Decision
    outcome_label: str
    reason_label: str
    comment: str  # "" unless asked for: it is free text and may name the patient
    changes: list[tuple[str, str]]
    signature_intact: bool


def decision_payload(decision: Decision) -> dict[str, Any]:
    """What the clinician signed: outcome, reason, comment, changes, the final resources, the Provenance."""
    payload: dict[str, Any] = open_json(decision.sealed, associated_data=decision.associated_data)
    return payload


def decision_signature_intact(decision: Decision, payload: Mapping[str, Any]) -> bool:
    return hashlib.sha256(canonical_json(payload)).hexdigest() == decision.signature_sha256


def _changes(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, Mapping):
        return []
    labels = {
        "code": "Condition",
        "clinical_status": "Clinical status",
        "verification_status": "Verification status",
        "onset": "Onset",
    }
    shown = []
    for key, label in labels.items():
        item = value.get(key)
        if key == "clinical_status":
            item = CLINICAL_STATUSES.get(str(item), item)
        elif key == "verification_status":
            item = VERIFICATION_STATUSES.get(str(item), item)
        if text_of(item):
            shown.append((label, text_of(item)))
    return shown


def decision_view(decision: Decision, *, with_comment: bool) -> DecisionView:
    payload = decision_payload(decision)
    return DecisionView(
        decision=decision,
        outcome_label=Decision.Outcome(decision.outcome).label,
        reason_label=REJECTION_REASONS.get(decision.reason_code, decision.reason_code),
        comment=text_of(payload.get("comment")) if with_comment else "",
        changes=_changes(payload.get("changes")),
        signature_intact=decision_signature_intact(decision, payload),
    )
