"""Real FHIR R4 content from ../shared/data through the intake validators.

Every official R4 example is parsed and validated; an official example that is refused is a suspect,
so the expected refusals are listed one by one with the reason. Every Synthea patient bundle must pass.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from clinical_ai.fhir.outcome import FhirError, Issue
from clinical_ai.fhir.resource_types import R4_ONLY_RESOURCE_TYPES
from clinical_ai.fhir.validation import Limits, check_intake_bundle, parse_json_body, validate_resource

pytestmark = pytest.mark.shared_data

LIMITS = Limits(max_body_bytes=20 * 1024 * 1024, max_bundle_entries=20_000, max_nesting_depth=64)

# R4 resource types that R4B dropped or redesigned and that have an example: refused as unsupported,
# never validated against a model that does not describe them
_UNSUPPORTED_WITH_EXAMPLES = sorted(
    R4_ONLY_RESOURCE_TYPES
    - {
        "SubstanceNucleicAcid",
        "SubstancePolymer",
        "SubstanceProtein",
        "SubstanceReferenceInformation",
        "SubstanceSourceMaterial",
    }
)

# The official examples refused, and why. Anything else refused is a false rejection to fix.
EXPECTED_REFUSALS: dict[str, str] = {
    **{
        f"{name}-example.json": f"R4 resource type {name} is not supported"
        for name in _UNSUPPORTED_WITH_EXAMPLES
    },
    # batch / transaction bundles that read or delete: this intake endpoint only creates and updates
    "Bundle-bundle-request-medsallergies.json": "Only POST and PUT entries are accepted",
    "Bundle-bundle-request-simplesummary.json": "Only POST and PUT entries are accepted",
    "Bundle-bundle-transaction.json": "Only POST and PUT entries are accepted",
    # the example itself breaks R4: Questionnaire.item.linkId is 1..1, its display items have none
    "Questionnaire-qs1.json": "Required element is missing",
}


def is_intake_bundle(body: dict[str, Any]) -> bool:
    return body.get("resourceType") == "Bundle" and body.get("type") in ("transaction", "batch")


def intake_issues(path: Path) -> list[Issue]:
    """What the FHIR endpoints would say about this file: [] when it would be accepted."""
    try:
        body = parse_json_body(path.read_bytes(), "application/fhir+json; charset=utf-8", limits=LIMITS)
        if is_intake_bundle(body):
            return check_intake_bundle(body, limits=LIMITS).issues
        return validate_resource(body)
    except FhirError as error:
        return error.issues


def test_official_r4_examples(shared_data: Path) -> None:
    folder = shared_data / "hl7_fhir_r4_official_examples"
    # package.json is the npm manifest of the example package, not a FHIR resource
    files = sorted(p for p in folder.glob("*.json") if p.name != "package.json")
    assert len(files) == 697

    refused: dict[str, list[Issue]] = {}
    by_reason: Counter[str] = Counter()
    for path in files:
        issues = intake_issues(path)
        if issues:
            refused[path.name] = issues
            reason = re.sub(r"R4 resource type \w+ ", "R4 resource type X ", issues[0].diagnostics)
            by_reason[f"{issues[0].code}: {reason}"] += 1

    print(f"\nofficial R4 examples: {len(files) - len(refused)} accepted, {len(refused)} refused")
    for reason, count in by_reason.most_common():
        print(f"  {count:3d}  {reason}")

    assert set(refused) == set(EXPECTED_REFUSALS), {
        name: [issue.as_fhir() for issue in issues[:3]]
        for name, issues in refused.items()
        if name not in EXPECTED_REFUSALS
    }
    for name, reason in EXPECTED_REFUSALS.items():
        assert any(issue.diagnostics == reason for issue in refused[name]), (name, refused[name][:3])


def synthea_files(shared_data: Path) -> list[Path]:
    return sorted((shared_data / "synthea_r4_ms_anonymizer_samples").glob("*.json"))


def test_every_synthea_patient_bundle_is_accepted(shared_data: Path) -> None:
    patients = [p for p in synthea_files(shared_data) if not p.name.startswith(("hospital", "practitioner"))]
    assert len(patients) == 11
    for path in patients:
        body = parse_json_body(path.read_bytes(), "application/fhir+json", limits=LIMITS)
        check = check_intake_bundle(body, limits=LIMITS)
        assert check.bundle_type == "transaction"
        assert check.ok, (path.name, [issue.as_fhir() for issue in check.issues[:5]])
        assert all(entry.method == "POST" and entry.resource_type for entry in check.entries)


def test_synthea_hospital_bundle_is_accepted(shared_data: Path) -> None:
    path = shared_data / "synthea_r4_ms_anonymizer_samples" / "hospitalInformation1583281853074.json"
    assert check_intake_bundle(
        parse_json_body(path.read_bytes(), "application/json", limits=LIMITS), limits=LIMITS
    ).ok


def test_synthea_practitioner_bundle_refers_into_the_hospital_bundle(shared_data: Path) -> None:
    """Synthea writes practitioners and their organizations as two bundles, linked by urn:uuid. Alone,
    the practitioner bundle's organization references resolve to nothing, which a transaction forbids:
    each refusal names a reference, and every one of them is a fullUrl of the hospital bundle."""
    folder = shared_data / "synthea_r4_ms_anonymizer_samples"
    practitioners = json.loads((folder / "practitionerInformation1583281853074.json").read_text("utf-8-sig"))
    hospital = json.loads((folder / "hospitalInformation1583281853074.json").read_text("utf-8-sig"))
    check = check_intake_bundle(practitioners, limits=LIMITS)
    assert check.issues
    assert {issue.code for issue in check.issues} == {"not-found"}
    hospital_urls = {entry["fullUrl"] for entry in hospital["entry"]}
    for result in check.entries:
        for issue in result.issues:
            assert issue.expression[0] == f"Bundle.entry[{result.index}].resource.organization.reference"
            reference = practitioners["entry"][result.index]["resource"]["organization"]["reference"]
            assert reference in hospital_urls
    # sent together, as one transaction, everything resolves
    together = {**practitioners, "entry": hospital["entry"] + practitioners["entry"]}
    assert check_intake_bundle(together, limits=LIMITS).ok


def test_largest_synthea_bundle_validates_within_seconds(shared_data: Path) -> None:
    largest = max(synthea_files(shared_data), key=lambda p: p.stat().st_size)
    body = largest.read_bytes()
    check_intake_bundle(
        parse_json_body(body, "application/fhir+json", limits=LIMITS), limits=LIMITS
    )  # warm-up
    started = time.perf_counter()
    check = check_intake_bundle(parse_json_body(body, "application/fhir+json", limits=LIMITS), limits=LIMITS)
    elapsed = time.perf_counter() - started
    print(f"\n{largest.name}: {len(body)} bytes, {len(check.entries)} entries, {elapsed:.2f} s")
    assert check.ok
    assert elapsed < 5.0
