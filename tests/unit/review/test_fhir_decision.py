"""The FHIR form of a decision, without a database: final statuses, the confirmed Condition, the signed
Provenance; every resource valid FHIR R4."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from clinical_ai.fhir.validation_resource import validate_resource
from clinical_ai.review.fhir_decision import (
    ConditionEdit,
    DecisionResourceError,
    DecisionSpec,
    Verifier,
    decision_resources,
    provenance_signature_verify,
)
from tests.unit.review.findings import (
    HYPERTENSION,
    finding_resources,
    news2_finding,
    news2_manifest,
    problem_finding,
    problem_manifest,
)

KEY = b"k" * 32
SIGNED_AT = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
VERIFIER = Verifier(username="dr-ward", display="Wanda Ward", organization_display="St Elsewhere General")


def spec(resources: list[dict[str, Any]], outcome: str = "accepted", **changes: Any) -> DecisionSpec:
    return DecisionSpec(
        suggestion_id="5b0e7c1e-0000-4000-8000-000000000001",
        outcome=outcome,  # type: ignore[arg-type]
        resources=resources,
        verifier=VERIFIER,
        signed_at=SIGNED_AT,
        **changes,
    )


def risk_resources() -> list[dict[str, Any]]:
    return finding_resources(news2_finding(), news2_manifest())


def problem_resources() -> list[dict[str, Any]]:
    return finding_resources(problem_finding(), problem_manifest())


def by_type(resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["resourceType"]: r for r in resources}


def assert_valid(resources: list[dict[str, Any]]) -> None:
    for resource in resources:
        assert validate_resource(resource) == [], resource["resourceType"]


def test_accepting_a_risk_makes_the_risk_assessment_final_with_the_same_id() -> None:
    original = risk_resources()
    built = decision_resources(spec(original), signing_key=KEY)
    risk = by_type(built.changed)["RiskAssessment"]
    assert risk["status"] == "final"
    assert risk["id"] == original[0]["id"]
    assert risk["meta"]["security"][0]["code"] == "AIAST"
    assert built.created == []
    assert_valid(built.all())
    assert original[0]["status"] == "preliminary"  # the input is not changed in place


def test_rejecting_cancels_and_revokes_and_gives_the_coded_reason() -> None:
    built = decision_resources(
        spec(problem_resources(), "rejected", reason_code="already-known", comment="On the list as E11."),
        signing_key=KEY,
    )
    changed = by_type(built.changed)
    assert changed["DetectedIssue"]["status"] == "cancelled"
    assert changed["RequestGroup"]["status"] == "revoked"
    assert changed["RequestGroup"]["note"][-1] == {
        "authorString": "Wanda Ward",
        "time": SIGNED_AT.isoformat(),
        "text": "On the list as E11.",
    }
    assert built.created == []
    reason = built.provenance["reason"][0]["coding"][0]
    assert (reason["system"], reason["code"]) == ("urn:clinical-ai:rejection-reason", "already-known")
    assert_valid(built.all())


def test_rejecting_a_risk_cancels_the_risk_assessment() -> None:
    built = decision_resources(
        spec(risk_resources(), "rejected", reason_code="data-wrong-or-stale"), signing_key=KEY
    )
    assert by_type(built.changed)["RiskAssessment"]["status"] == "cancelled"
    assert_valid(built.all())


def test_accepting_a_problem_creates_a_confirmed_condition_still_labelled_ai_asserted() -> None:
    built = decision_resources(spec(problem_resources()), signing_key=KEY)
    assert by_type(built.changed)["DetectedIssue"]["status"] == "final"
    assert by_type(built.changed)["RequestGroup"]["status"] == "completed"
    [condition] = built.created
    assert condition["resourceType"] == "Condition"
    assert condition["id"] not in {"proposed-condition", ""}
    assert condition["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert condition["clinicalStatus"]["coding"][0]["code"] == "active"
    assert condition["code"]["coding"][0]["code"] == "44054006"
    assert condition["meta"]["security"][0]["code"] == "AIAST"
    assert condition["subject"]["identifier"]["value"] == "pt-1"
    assert condition["asserter"]["identifier"] == {"system": "urn:clinical-ai:user", "value": "dr-ward"}
    assert {"time": SIGNED_AT.isoformat(), "text": "Verified by Wanda Ward"} in condition["note"]
    assert condition["recordedDate"] == SIGNED_AT.isoformat()
    assert_valid(built.all())


def test_accepting_with_changes_takes_the_clinicians_fields() -> None:
    edit = ConditionEdit(
        code=HYPERTENSION, clinical_status="remission", verification_status="differential", onset="2024-05-01"
    )
    built = decision_resources(
        spec(problem_resources(), "modified", condition=edit, comment="Diet controlled."), signing_key=KEY
    )
    [condition] = built.created
    assert condition["code"] == {"coding": [HYPERTENSION], "text": HYPERTENSION["display"]}
    assert condition["clinicalStatus"]["coding"][0]["code"] == "remission"
    assert condition["verificationStatus"]["coding"][0]["code"] == "differential"
    assert condition["onsetDateTime"] == "2024-05-01"
    assert condition["note"][-1]["text"] == "Diet controlled."
    assert_valid(built.all())


def test_the_provenance_names_the_verifier_the_model_and_signs_the_targets() -> None:
    built = decision_resources(spec(problem_resources()), signing_key=KEY)
    provenance = built.provenance
    targets = [*built.changed, *built.created]
    assert [t["reference"] for t in provenance["target"]] == [
        f"{t['resourceType']}/{t['id']}" for t in targets
    ]
    assert provenance["recorded"] == SIGNED_AT.isoformat()
    verifier, author = provenance["agent"]
    assert verifier["type"]["coding"][0]["code"] == "verifier"
    assert verifier["who"]["identifier"] == {"system": "urn:clinical-ai:user", "value": "dr-ward"}
    assert verifier["who"]["display"] == "Wanda Ward"
    assert verifier["onBehalfOf"]["display"] == "St Elsewhere General"
    assert author["type"]["coding"][0]["code"] == "author"
    assert author["who"]["reference"].startswith("Device/")
    assert provenance["activity"]["coding"][0]["code"] == "CREATE"
    signature = provenance["signature"][0]
    assert signature["type"][0]["code"] == "1.2.840.10065.1.12.1.5"
    assert (signature["targetFormat"], signature["sigFormat"]) == (
        "application/fhir+json",
        "application/octet-stream",
    )
    assert signature["who"] == verifier["who"]
    assert provenance_signature_verify(provenance, targets, key=KEY)
    assert not provenance_signature_verify(provenance, targets, key=b"x" * 32)


def test_the_signature_ignores_the_stores_version_stamp_and_catches_any_edit() -> None:
    built = decision_resources(spec(risk_resources()), signing_key=KEY)
    stored = copy.deepcopy(built.changed)
    stored[0]["meta"].update({"versionId": "2", "lastUpdated": "2026-11-21T09:30:01+00:00"})
    assert provenance_signature_verify(built.provenance, stored, key=KEY)
    stored[0]["status"] = "preliminary"
    assert not provenance_signature_verify(built.provenance, stored, key=KEY)
    assert not provenance_signature_verify(built.provenance, [], key=KEY)


def test_building_twice_gives_identical_resources() -> None:
    resources = problem_resources()
    first = decision_resources(spec(resources), signing_key=KEY)
    second = decision_resources(spec(copy.deepcopy(resources)), signing_key=KEY)
    assert first.all() == second.all()


@pytest.mark.parametrize(
    ("outcome", "changes", "message"),
    [
        ("maybe", {}, "unknown outcome"),
        ("rejected", {}, "unknown rejection reason"),
        ("rejected", {"reason_code": "made-up"}, "unknown rejection reason"),
        ("accepted", {"reason_code": "duplicate"}, "only a rejection"),
        ("modified", {"condition": ConditionEdit(clinical_status="cured")}, "clinical status"),
        ("modified", {"condition": ConditionEdit(verification_status="refuted")}, "verification status"),
    ],
)
def test_refuses_what_it_cannot_express(outcome: str, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(DecisionResourceError, match=message):
        decision_resources(spec(problem_resources(), outcome, **changes), signing_key=KEY)


def test_refuses_a_naive_time_and_no_resources() -> None:
    with pytest.raises(DecisionResourceError, match="timezone"):
        decision_resources(
            DecisionSpec("s", "accepted", risk_resources(), VERIFIER, datetime(2026, 1, 1)), signing_key=KEY
        )
    with pytest.raises(DecisionResourceError, match="no resources"):
        decision_resources(spec([]), signing_key=KEY)
