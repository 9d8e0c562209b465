"""One finding per proposed concept: the summary, the evidence a clinician reviews, and the FHIR Condition
proposal (provisional, problem-list-item) that a sign-off would send back to the EHR."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from clinical_ai.inference.builtin.problem_list.assertion import NOT_AFFIRMED
from clinical_ai.inference.builtin.problem_list.matching import Mention
from clinical_ai.inference.builtin.problem_list.vocabulary import Concept
from clinical_ai.inference.engine.types import Finding

CLINICAL_STATUS = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION_STATUS = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
SUMMARY = "Notes assert {}; not on the coded problem list"
MAX_SUMMARY = 139


def summary_of(display: str) -> str:
    summary = SUMMARY.format(display)
    if len(summary) <= MAX_SUMMARY:
        return summary
    room = MAX_SUMMARY - len(SUMMARY.format("")) - 1
    return SUMMARY.format(display[:room].rstrip() + "\u2026")


def excerpts_of(affirmed: Sequence[Mention], *, limit: int) -> list[dict[str, Any]]:
    """The most similar mentions first, then those of the most recent note; one per distinct sentence."""
    ordered = sorted(affirmed, key=lambda m: m.sentence.note.date or "", reverse=True)
    ordered.sort(key=lambda m: -m.similarity)
    excerpts: list[dict[str, Any]] = []
    seen: set[str] = set()
    for mention in ordered:
        sentence = mention.sentence
        if sentence.text.lower() in seen:
            continue
        seen.add(sentence.text.lower())
        excerpts.append(
            {
                "ref": sentence.note.ref,
                "attachment": sentence.note.attachment,
                "text": sentence.text,
                "highlight": list(mention.highlight),
                "note_offsets": [sentence.start, sentence.end],
                "note_date": sentence.note.date,
                "section": sentence.section,
                "similarity": round(mention.similarity, 4),
                "match": mention.match,
            }
        )
        if len(excerpts) >= limit:
            break
    return excerpts


def condition_proposal(concept: Concept, *, model_id: str, model_version: str) -> dict[str, Any]:
    """A FHIR R4 Condition without id or subject: the service adds the patient when it is sent back."""
    category = {"system": CONDITION_CATEGORY, "code": "problem-list-item", "display": "Problem List Item"}
    return {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": CLINICAL_STATUS, "code": "active", "display": "Active"}]},
        "verificationStatus": {
            "coding": [{"system": VERIFICATION_STATUS, "code": "provisional", "display": "Provisional"}]
        },
        "category": [{"coding": [category]}],
        "code": {"coding": [concept.coding()], "text": concept.display},
        "note": [{"text": f"Proposed from clinical notes by {model_id} {model_version}"}],
    }


def finding_build(
    concept: Concept,
    mentions: Sequence[Mention],
    *,
    threshold: float,
    matching: str,
    max_excerpts: int,
    model_id: str,
    model_version: str,
) -> Finding:
    """The finding for ``concept`` from all its mentions (at least one affirmed)."""
    affirmed = [m for m in mentions if m.assertion == "affirmed"]
    skipped: Counter[str] = Counter(m.assertion for m in mentions if m.assertion != "affirmed")
    evidence = {
        "concept": concept.coding(),
        "excerpts": excerpts_of(affirmed, limit=max_excerpts),
        "threshold": threshold,
        "assertion": "affirmed",
        "affirmed_mentions": len(affirmed),
        "notes_with_mentions": len({(m.sentence.note.ref, m.sentence.note.attachment) for m in affirmed}),
        # Lexical mentions only: encoder spans are encoded only when affirmed.
        "skipped": {kind: skipped.get(kind, 0) for kind in NOT_AFFIRMED},
        "matching": matching,
    }
    return Finding(
        key=f"condition:{concept.code}",
        kind="problem",
        urgency="info",
        summary=summary_of(concept.display),
        evidence=evidence,
        score=round(max(m.similarity for m in affirmed), 4),
        proposal=condition_proposal(concept, model_id=model_id, model_version=model_version),
    )
