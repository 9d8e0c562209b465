"""CDS Hooks cards from suggestions, as plain Python.

One card per suggestion, its uuid derived from the issuer and the suggestion (uuid5) so that feedback maps
back to it. Pending suggestions say so in the summary and detail, and offer the action that accepting
means (create the proposed Condition, or mark a risk assessment reviewed) plus override reasons; signed-off
results say who signed and when, and offer nothing to accept. The detail is the basis a clinician needs:
the inputs used with their values, what was missing, the model and its version; never dates from the
de-identified copy (they are shifted per patient) and no patient identifiers.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from clinical_ai.inference.engine.fhir_output import (
    AI_ASSERTED,
    CONDITION_VER_STATUS_SYSTEM,
    MODEL_SYSTEM,
)
from clinical_ai.review.fhir_decision import REJECTION_REASON_SYSTEM, REJECTION_REASONS

SUMMARY_LIMIT = 140  # the spec: "<140 characters"
CARD_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:clinical-ai:cds-hooks:card")
SOURCE_LABEL = "clinical-ai"
PENDING = "pending"
_STATUS_LABELS = {"accepted": "accepted", "modified": "accepted with changes", "rejected": "rejected"}
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!<>|])")
MAX_PARAMETERS = 12


def card_uuid(*, issuer_id: str, suggestion_id: str) -> uuid.UUID:
    return uuid.uuid5(CARD_NAMESPACE, f"{issuer_id}:{suggestion_id}")


def accept_suggestion_uuid(card: uuid.UUID) -> uuid.UUID:
    """The uuid of the card's one suggestion: what acceptedSuggestions names in feedback."""
    return uuid.uuid5(card, "accept")


@dataclass(frozen=True)
class CardSource:
    card_uuid: uuid.UUID
    kind: str  # risk | problem | ...
    urgency: str  # critical | warning | info
    status: str  # pending | accepted | modified
    model_id: str
    model_version: str
    model_name: str
    payload: Mapping[str, Any]  # review.services.suggestion_payload
    review_url: str
    model_card_url: str
    patient_reference: str  # the EHR's own Patient/<id>
    decided_by: str = ""
    decided_at: datetime | None = None
    # This gateway's SMART launch URL (``/launch``): with it the card also offers a ``smart`` link that the
    # EHR launches with its own iss and launch context, signing the clinician in on this suggestion.
    launch_url: str = ""
    suggestion_id: str = ""  # the suggestion's external id, for the smart link's appContext


def _md(value: Any) -> str:
    """Text made inert for markdown (no links, emphasis or HTML from model output)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))


def _summary(label: str, text: str) -> str:
    summary = f"{label}: {' '.join(text.split())}"
    if len(summary) >= SUMMARY_LIMIT:
        summary = summary[: SUMMARY_LIMIT - 2].rstrip() + "…"
    return summary


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _completeness(payload: Mapping[str, Any]) -> str:
    evidence = payload.get("evidence")
    stated = payload.get("completeness") or (
        evidence.get("completeness") if isinstance(evidence, Mapping) else None
    )
    return str(stated) if stated in ("lower_bound", "not_scored") else "complete"


def _not_scored_lines(payload: Mapping[str, Any]) -> list[str]:
    """What a result that cannot be scored says first: that it is no score at all, and what is missing."""
    missing = payload.get("missing_inputs")
    named = ", ".join(_md(m) for m in missing if isinstance(m, str)) if isinstance(missing, list) else ""
    lines = [
        "**Cannot be scored: not enough observations.** This is not a low score: what was recorded is too "
        "little to tell."
    ]
    evidence = payload.get("evidence")
    listed = isinstance(evidence, Mapping) and _dicts(evidence.get("parameters"))
    if named and not listed:  # a risk basis lists its missing parameters itself
        lines.append(f"**Missing:** {named}")
    return lines


def _risk_basis(evidence: Mapping[str, Any], completeness: str = "complete") -> list[str]:
    lines: list[str] = []
    if evidence.get("aggregate") is not None and completeness != "not_scored":
        band = evidence.get("band")
        if completeness == "lower_bound":
            floor = "" if band == "high" else "at least "
            risk = f", {floor}{_md(band)} risk" if band else ""
            lines.append(f"**Score:** at least {_md(evidence['aggregate'])} (partial score{risk})")
        else:
            risk = f" ({_md(band)} risk)" if band else ""
            lines.append(f"**Score:** {_md(evidence['aggregate'])}{risk}")
    used = []
    missing = []
    for parameter in _dicts(evidence.get("parameters")):
        label = _md(parameter.get("label") or parameter.get("name") or "?")
        if parameter.get("status") == "scored" and parameter.get("value") is not None:
            unit = f" {_md(parameter['unit'])}" if parameter.get("unit") else ""
            score = f" (score {_md(parameter['score'])})" if parameter.get("score") is not None else ""
            age = parameter.get("age_hours")
            aged = (
                f", {_number(age)} h before the assessment"
                if isinstance(age, int | float) and not isinstance(age, bool) and age > 0
                else ""
            )
            used.append(f"- {label}: {_md(_number(parameter['value']))}{unit}{score}{aged}")
        else:
            reason = parameter.get("reason") or parameter.get("status") or "missing"
            missing.append(f"{label} ({_md(reason)})")
    if used:
        lines.append("**Inputs used:**")
        lines.extend(used[:MAX_PARAMETERS])
    if missing:
        lines.append(f"**Missing:** {', '.join(missing)}")
    if evidence.get("note"):
        lines.append(f"_{_md(evidence['note'])}_")
    if evidence.get("clinical_response"):
        lines.append(
            f"**Suggested response (per the model's guideline):** {_md(evidence['clinical_response'])}"
        )
    return lines


def _problem_basis(evidence: Mapping[str, Any]) -> list[str]:
    concept = evidence.get("concept") if isinstance(evidence.get("concept"), Mapping) else {}
    assert isinstance(concept, Mapping)
    display = _md(concept.get("display") or concept.get("code") or "a problem")
    code = f" ({_md(concept['code'])})" if concept.get("code") else ""
    notes = evidence.get("notes_with_mentions")
    mentions = evidence.get("affirmed_mentions")
    lines = [
        f"**Found in notes:** {display}{code}, affirmed {_md(mentions if mentions is not None else '?')} "
        f"time(s) in {_md(notes if notes is not None else '?')} note(s); not on the coded problem list."
    ]
    excerpts = _dicts(evidence.get("excerpts"))
    if excerpts and isinstance(excerpts[0].get("text"), str):
        lines.append(f"> {_md(excerpts[0]['text'][:300])} _(de-identified excerpt)_")
    return lines


def _basis(source: CardSource) -> list[str]:
    evidence = source.payload.get("evidence")
    evidence = evidence if isinstance(evidence, Mapping) else {}
    if source.kind == "risk":
        return _risk_basis(evidence, _completeness(source.payload))
    if source.kind == "problem":
        return _problem_basis(evidence)
    missing = evidence.get("missing")
    return (
        [f"**Missing:** {', '.join(_md(m) for m in missing)}"]
        if isinstance(missing, list) and missing
        else []
    )


def _status_line(source: CardSource) -> str:
    if source.status == PENDING:
        return (
            "**Pending clinician review.** A model's suggestion, not yet checked by a clinician: "
            "accepting it here signs it off in your name through this EHR."
        )
    when = source.decided_at.strftime("%Y-%m-%d %H:%M UTC") if source.decided_at else "an earlier date"
    outcome = _STATUS_LABELS.get(source.status, source.status)
    return f"**Signed off** by {_md(source.decided_by or 'a clinician')} on {when} ({outcome})."


def _proposed_condition(source: CardSource) -> dict[str, Any] | None:
    proposal = source.payload.get("proposal")
    if not isinstance(proposal, Mapping) or proposal.get("resourceType") != "Condition":
        return None
    condition: dict[str, Any] = copy.deepcopy(dict(proposal))
    condition.pop("id", None)
    condition["subject"] = {"reference": source.patient_reference}
    # Accepting is the clinician's confirmation (as a sign-off in the review UI); still labelled AI-asserted.
    condition["verificationStatus"] = {
        "coding": [{"system": CONDITION_VER_STATUS_SYSTEM, "code": "confirmed", "display": "Confirmed"}]
    }
    meta = dict(condition.get("meta") or {})
    security = [s for s in meta.get("security") or [] if isinstance(s, Mapping)]
    if not any(s.get("code") == AI_ASSERTED["code"] for s in security):
        security.append(dict(AI_ASSERTED))
    meta["security"] = security
    condition["meta"] = meta
    return condition


def _condition_display(condition: Mapping[str, Any]) -> str:
    code = condition.get("code") if isinstance(condition.get("code"), Mapping) else {}
    assert isinstance(code, Mapping)
    codings = _dicts(code.get("coding"))
    return str(code.get("text") or (codings[0].get("display") if codings else "") or "the problem")


def _suggestions(source: CardSource) -> list[dict[str, Any]]:
    if source.status != PENDING:
        return []
    accept = str(accept_suggestion_uuid(source.card_uuid))
    condition = _proposed_condition(source)
    if condition is not None:
        display = _condition_display(condition)[:80]
        return [
            {
                "label": f"Add {display} to the problem list",
                "uuid": accept,
                "actions": [
                    {
                        "type": "create",
                        "description": f"Create a confirmed {display} problem-list Condition",
                        "resource": condition,
                    }
                ],
            }
        ]
    return [
        {"label": "Mark as reviewed (signs the suggestion off as accepted)", "uuid": accept, "actions": []}
    ]


def override_reasons() -> list[dict[str, str]]:
    """Our rejection reasons, offered as the card's override reasons (each with a display: cds-resp-4)."""
    return [
        {"system": REJECTION_REASON_SYSTEM, "code": code, "display": display}
        for code, display in REJECTION_REASONS.items()
    ]


def launch_app_context(suggestion_id: str) -> str:
    """The ``appContext`` of a card's smart link: which suggestion to open (``suggestion=<uuid>``); the
    launch (integrations.smart.launch_services) opens it only for the patient in context at this site."""
    return urlencode({"suggestion": suggestion_id})


def _links(source: CardSource, pending: bool) -> list[dict[str, Any]]:
    links: list[dict[str, Any]] = []
    if source.launch_url and source.suggestion_id:
        # First: an EHR that launches SMART apps signs the clinician in through it, on this suggestion.
        links.append(
            {
                "label": "Open in clinical-ai review" if pending else "See the sign-off in clinical-ai",
                "url": source.launch_url,
                "type": "smart",
                "appContext": launch_app_context(source.suggestion_id),
            }
        )
    # Kept for EHRs without SMART launch: the page itself, behind clinical-ai's own sign-in.
    links.append(
        {
            "label": (
                "Open in clinical-ai review (sign in there)"
                if links
                else ("Open in clinical-ai review" if pending else "See the sign-off in clinical-ai")
            ),
            "url": source.review_url,
            "type": "absolute",
        }
    )
    return links


def suggestion_card(source: CardSource) -> dict[str, Any]:
    """The card for one suggestion."""
    pending = source.status == PENDING
    label = "Pending review" if pending else "Signed off"
    summary_text = str(source.payload.get("summary") or f"Finding of {source.model_name}")
    not_scored = _not_scored_lines(source.payload) if _completeness(source.payload) == "not_scored" else []
    detail = [
        _status_line(source),
        "",
        *not_scored,
        *_basis(source),
        "",
        f"Model: {_md(source.model_name)} {_md(source.model_version)} (see its model card for validation figures).",
    ]
    card: dict[str, Any] = {
        "uuid": str(source.card_uuid),
        "summary": _summary(label, summary_text),
        "detail": "\n".join(line if line else "" for line in detail).strip(),
        "indicator": source.urgency if source.urgency in ("info", "warning", "critical") else "info",
        "source": {
            "label": f"{SOURCE_LABEL}: {source.model_name} {source.model_version}"[:200],
            "url": source.model_card_url,
            "topic": {"system": MODEL_SYSTEM, "code": source.model_id, "display": source.model_name},
        },
        "links": _links(source, pending),
    }
    suggestions = _suggestions(source)
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "at-most-one"
        card["overrideReasons"] = override_reasons()
    return card


def progress_card(*, resource_count: int, review_queue_url: str) -> dict[str, Any]:
    """The card for data that is still being analysed when the time budget runs out."""
    return {
        "uuid": str(uuid.uuid4()),
        "summary": "Analysis of the new data is in progress",
        "detail": (
            f"{resource_count} new or changed record(s) from this visit are being de-identified and run "
            "through the models. Results appear on the next view of this patient and in the review queue; "
            "the cards shown are from earlier analyses."
        ),
        "indicator": "info",
        "source": {"label": SOURCE_LABEL},
        "links": [
            {"label": "Open the clinical-ai review queue", "url": review_queue_url, "type": "absolute"}
        ],
    }


def model_off_card(
    *,
    model_id: str,
    model_name: str,
    since: datetime,
    reason: str,
    gives_scores: bool,
    model_card_url: str,
) -> dict[str, Any]:
    """The card for a model an admin has switched off, on every hook where it would have answered: silence
    from it must not read as "nothing to report".

    Indicator ``info``: the card says nothing about this patient (it is the same on every patient's chart),
    so it must not outrank the patient's own warnings nor interrupt every order while a model is off; its
    summary and detail carry the point. The uuid is stable for one switch-off, so repeated calls repeat it.
    """
    when = since.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    name = _md(model_name)
    meaning = (
        f"No {name} card does not mean a low score: check the patient's observations yourself."
        if gives_scores
        else f"No {name} card does not mean there is nothing to find."
    )
    detail = [
        f"**{name} is switched off** by an administrator since {when}"
        + (f" (reason: {_md(reason[:200])})." if reason else "."),
        "",
        f"It gives no new results while it is off. {meaning} "
        "Cards from it shown here were made before it was switched off and may be out of date.",
    ]
    return {
        "uuid": str(uuid.uuid5(CARD_NAMESPACE, f"model-off:{model_id}:{since.isoformat()}")),
        "summary": _summary("Switched off", f"{model_name} gives no new results"),
        "detail": "\n".join(detail),
        "indicator": "info",
        "source": {
            "label": f"{SOURCE_LABEL}: {model_name}"[:200],
            "url": model_card_url,
            "topic": {"system": MODEL_SYSTEM, "code": model_id, "display": model_name},
        },
    }


def cards_order(cards: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    rank = {"critical": 0, "warning": 1, "info": 2}
    return sorted(cards, key=lambda card: rank.get(str(card.get("indicator")), 3))
