"""One suggestion as the review page shows it: its summary and basis, the Condition it proposes, its
model's card, and the decision when there is one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clinical_ai.core.sealing import open_json
from clinical_ai.inference.registry import catalogue
from clinical_ai.review.models import Decision, Suggestion
from clinical_ai.review.selectors.basis import ProblemBasis, RiskBasis, problem_basis, risk_basis
from clinical_ai.review.selectors.decision import DecisionView, decision_view
from clinical_ai.review.selectors.evidence import mapping_of, mappings_of, strings_of, text_of
from clinical_ai.review.selectors.queue import short_pseudonym
from clinical_ai.review.times import TimeLens


@dataclass(frozen=True)
class ProposedCondition:
    display: str
    system: str
    code: str
    clinical_status: str
    verification_status: str


def _first_coding(concept: Any) -> Mapping[str, Any]:
    if isinstance(concept, Mapping):
        codings = mappings_of(concept.get("coding"))
        if codings:
            return codings[0]
    return {}


def proposed_condition(proposal: Any) -> ProposedCondition | None:
    if not isinstance(proposal, Mapping) or proposal.get("resourceType", "Condition") != "Condition":
        return None
    code = mapping_of(proposal.get("code"))
    coding = _first_coding(code)
    return ProposedCondition(
        display=text_of(code.get("text")) or text_of(coding.get("display")) or text_of(coding.get("code")),
        system=text_of(coding.get("system")),
        code=text_of(coding.get("code")),
        clinical_status=text_of(_first_coding(proposal.get("clinicalStatus")).get("code")) or "active",
        verification_status=text_of(_first_coding(proposal.get("verificationStatus")).get("code")),
    )


def suggestion_proposal(suggestion: Suggestion) -> ProposedCondition | None:
    """The Condition a suggestion proposes (what the sign-off form edits), if any."""
    payload = mapping_of(open_json(suggestion.sealed, associated_data=suggestion.associated_data))
    return proposed_condition(payload.get("proposal"))


@dataclass(frozen=True)
class ModelCardView:
    model_id: str
    version: str
    name: str
    found: bool
    clinical_summary: str = ""  # plain words: what it does, for whom, its limits, when not to rely on it
    intended_use: str = ""
    intended_users: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    development: list[str] = field(default_factory=list)
    validation_summary: str = ""
    figures: list[dict[str, str]] = field(default_factory=list)
    limitations: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    explanation_method: str = ""


def model_card(model_id: str, version: str, name: str = "") -> ModelCardView:
    manifest = catalogue().manifest(model_id, version)
    if manifest is None:
        return ModelCardView(model_id, version, name or model_id, found=False)
    card = manifest.card
    validation = card.get("validation")
    validation = validation if isinstance(validation, Mapping) else {"summary": validation}
    return ModelCardView(
        model_id=model_id,
        version=version,
        name=manifest.name,
        found=True,
        clinical_summary=text_of(card.get("clinical_summary")),
        intended_use=text_of(card.get("intended_use")),
        intended_users=strings_of(card.get("intended_users")),
        inputs=strings_of(card.get("inputs")),
        development=strings_of(card.get("development")),
        validation_summary=text_of(validation.get("summary")),
        figures=[
            {key: text_of(figure.get(key)) for key in ("name", "value", "source")}
            for figure in mappings_of(validation.get("figures"))
        ],
        limitations=strings_of(card.get("limitations")),
        references=strings_of(card.get("references")),
        explanation_method=text_of(card.get("explanation_method")),
    )


@dataclass(frozen=True)
class SuggestionReview:
    suggestion: Suggestion
    summary: str
    patient_short: str
    risk: RiskBasis | None
    problem: ProblemBasis | None
    proposal: ProposedCondition | None
    model: ModelCardView
    decision: DecisionView | None
    messages: list[str]  # the run's messages ("no vital signs recorded"): never PHI


def suggestion_review(
    suggestion: Suggestion, *, with_comment: bool = False, times: TimeLens | None = None
) -> SuggestionReview:
    """A suggestion as the review page shows it: its summary and basis, the proposal, the model's card,
    and the decision when there is one. The basis's times through ``times`` (real or labelled shifted);
    without it, as the de-identified copy holds them, labelled as shifted."""
    payload = mapping_of(open_json(suggestion.sealed, associated_data=suggestion.associated_data))
    evidence = mapping_of(payload.get("evidence"))
    model = mapping_of(payload.get("model"))
    decision = Decision.objects.filter(suggestion=suggestion).first()
    run_messages = suggestion.run.messages if isinstance(suggestion.run.messages, list) else []
    return SuggestionReview(
        suggestion=suggestion,
        summary=text_of(payload.get("summary")),
        patient_short=short_pseudonym(suggestion.patient_pseudonym),
        risk=risk_basis(evidence, payload.get("risk"), times) if suggestion.kind == "risk" else None,
        problem=problem_basis(evidence, times) if suggestion.kind == "problem" else None,
        proposal=proposed_condition(payload.get("proposal")),
        model=model_card(suggestion.model_id, suggestion.model_version, text_of(model.get("name"))),
        decision=decision_view(decision, with_comment=with_comment) if decision else None,
        messages=[text_of(m) for m in run_messages if text_of(m)],
    )
