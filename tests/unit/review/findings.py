"""Findings and model manifests for the review tests, without a database: a real NEWS2 finding from the
real model on hand-made vital signs, and a problem-list finding shaped as the problem-list model writes
them (concept, excerpts with highlight offsets, threshold, skipped mentions), with its proposal."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from clinical_ai.inference.builtin.news2 import build
from clinical_ai.inference.builtin.news2.model import News2Model
from clinical_ai.inference.engine.fhir_output import RunContext, run_output_issues, run_resources
from clinical_ai.inference.engine.manifest import (
    ModelManifest,
    ModelSpec,
    artifacts_verify,
    manifest_load,
    manifest_parse,
)
from clinical_ai.inference.engine.types import Finding, ModelResult, PatientContext, SourceResource

ROOT = Path(__file__).resolve().parents[3]
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
NOW = datetime(2026, 11, 20, 8, 15, tzinfo=UTC)
PROBLEM_MODEL_ID = "test-problems"


# The model card of the test manifests: every section a card must have, in a few words.
TEST_CARD: dict[str, Any] = {
    "clinical_summary": "Tests only.",
    "intended_use": "Tests only.",
    "intended_users": ["Clinicians"],
    "development": "By hand.",
    "validation": {"summary": "None.", "figures": []},
    "limitations": ["Not a real model."],
}


def _observation(
    code: str, value: float | None, unit: str | None, when: datetime, system: str = LOINC
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "effectiveDateTime": when.isoformat(),
    }
    if value is not None:
        resource["valueQuantity"] = {"value": value, "unit": unit}
    return resource


@functools.cache
def news2_manifest() -> ModelManifest:
    return manifest_load(ROOT / "fixtures" / "models" / "news2" / "manifest.json")


@functools.cache
def _news2() -> News2Model:
    manifest = news2_manifest()
    return build(ModelSpec(manifest=manifest, artifacts=artifacts_verify(manifest)))


def news2_finding(pseudonym: str = "pt-1") -> Finding:
    """High risk, with systolic BP and consciousness missing and the temperature stale."""
    vitals = [
        _observation("9279-1", 25, "/min", NOW),
        _observation("59408-5", 91, "%", NOW),
        _observation("722742002", None, None, NOW, system=SNOMED),  # breathing room air
        _observation("8867-4", 112, "/min", NOW),
        _observation("8310-5", 38.6, "Cel", NOW - timedelta(hours=30)),
    ]
    context = PatientContext(
        patient_pseudonym=pseudonym,
        resources=tuple(SourceResource(ref=f"obs-{i}", resource=r) for i, r in enumerate(vitals)),
    )
    result = _news2().predict([context])[0]
    assert len(result.findings) == 1
    return result.findings[0]


@functools.cache
def problem_manifest() -> ModelManifest:
    return manifest_parse(
        {
            "id": PROBLEM_MODEL_ID,
            "version": "1.0.0",
            "name": "Problem-list gaps (test)",
            "kind": "rules",
            "entrypoint": "tests.unit.review.findings:problem_manifest",
            "artifacts": [],
            "inputs": [],
            "thresholds": {"similarity": 0.8},
            "card": TEST_CARD,
        },
        source=Path("test-problems.json"),
        sha256="0" * 64,
    )


DIABETES = {"system": SNOMED, "code": "44054006", "display": "Diabetes mellitus type 2"}
HYPERTENSION = {"system": SNOMED, "code": "59621000", "display": "Essential hypertension"}


def problem_finding(
    *,
    text: str = "Known type 2 diabetes, on metformin.",
    highlight: Any = (6, 21),
    concept: dict[str, str] | None = None,
    evidence: dict[str, Any] | None = None,
) -> Finding:
    concept = concept or DIABETES
    found_evidence = {
        "concept": concept,
        "excerpts": [
            {
                "ref": "doc-1",
                "attachment": 0,
                "text": text,
                "highlight": list(highlight) if highlight is not None else None,
                "note_offsets": [120, 120 + len(text)],
                "note_date": "2026-10-02",
                "section": "assessment",
                "similarity": 1.0,
                "match": "lexical",
            }
        ],
        "threshold": 0.8,
        "assertion": "affirmed",
        "affirmed_mentions": 2,
        "notes_with_mentions": 1,
        "skipped": {"negated": 1, "historical": 0, "family": 2},
        "matching": "lexical+embedding",
    }
    return Finding(
        key=f"condition:{concept['code']}",
        kind="problem",
        urgency="info",
        summary=f"Notes assert {concept['display']}; not on the coded problem list",
        evidence=evidence if evidence is not None else found_evidence,
        score=1.0,
        proposal={
            "resourceType": "Condition",
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "active",
                    }
                ]
            },
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                            "code": "problem-list-item",
                        }
                    ]
                }
            ],
            "code": {"coding": [dict(concept)], "text": concept["display"]},
            "note": [{"text": "Proposed from clinical notes by test-problems 1.0.0"}],
        },
    )


def finding_resources(
    finding: Finding, manifest: ModelManifest, *, pseudonym: str = "pt-1", suggestion_id: str = "s-1"
) -> list[dict[str, Any]]:
    """The FHIR resources a suggestion for ``finding`` carries, as the inference stage makes them."""
    context = RunContext(
        run_id="run-1", model=manifest, patient_pseudonym=pseudonym, occurred=NOW, input_sha256="a" * 64
    )
    output = run_resources(context, ModelResult(pseudonym, (finding,)), {finding.key: suggestion_id})
    assert run_output_issues(output) == []
    return output.per_finding[finding.key].resources
