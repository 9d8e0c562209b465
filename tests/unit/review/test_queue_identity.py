"""Who the patients are in the review queue and on the suggestion page, from the real pipeline: named for
a clinician of their site (one audit row per page), found by name or MRN through the keyed index, which
holds no plaintext; pseudonyms and shifted, labelled times for everyone else. Real times in the site's
time zone."""

from __future__ import annotations

import json
import re
import uuid
from datetime import date, timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from clinical_ai.accounts.models import Organization
from clinical_ai.audit.models import AuditEvent
from clinical_ai.deid.models import PseudonymVaultEntry
from clinical_ai.review.models import Suggestion
from clinical_ai.vault.pseudonyms import PATIENT_MRN_INDEX_KIND, PATIENT_NAME_INDEX_KIND, date_shift_days
from clinical_ai.vault.services import patient_pseudonyms_search, pseudonym_key
from tests.factories import sample_bundle
from tests.pipeline import bundle_process

pytestmark = pytest.mark.django_db

QUEUE = "/review/"
SECOND_MRN = "5582-3301"


def _second_patient() -> dict[str, Any]:
    """The sample bundle as Tomasz Brennan-Achebe (another MRN, name, birth date), a new bundle."""
    text = json.dumps(sample_bundle())
    for entry in sample_bundle()["entry"]:
        text = text.replace(entry["fullUrl"], f"urn:uuid:{uuid.uuid4()}")
    bundle: dict[str, Any] = json.loads(text)
    bundle["identifier"]["value"] = f"urn:uuid:{uuid.uuid4()}"
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Patient":
            resource["identifier"][0]["value"] = SECOND_MRN
            resource["name"] = [{"use": "official", "family": "Brennan-Achebe", "given": ["Tomasz"]}]
            resource["birthDate"] = "1948-07-02"
            resource["gender"] = "male"
    return bundle


def _with_ward_and_bed(bundle: dict[str, Any]) -> dict[str, Any]:
    """The Encounter placed on a ward (named in the Encounter) and in a bed (a Location in the bundle)."""
    bed_url = f"urn:uuid:{uuid.uuid4()}"
    bed_type = "http://terminology.hl7.org/CodeSystem/location-physical-type"
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "Encounter":
            entry["resource"]["location"] = [
                {
                    "location": {"display": "Ward 7B"},
                    "status": "active",
                    "physicalType": {"coding": [{"system": bed_type, "code": "wa"}]},
                },
                {"location": {"reference": bed_url}, "status": "active"},
            ]
    bundle["entry"].append(
        {
            "fullUrl": bed_url,
            "resource": {
                "resourceType": "Location",
                "name": "Bed 12",
                "physicalType": {"coding": [{"system": bed_type, "code": "bd"}]},
            },
            "request": {"method": "POST", "url": "Location"},
        }
    )
    return bundle


@pytest.fixture
def two_patients(client: Any, ehr_client: Any) -> tuple[list[Suggestion], list[Suggestion]]:
    """Margaret Okafor-Lindqvist (on Ward 7B, bed 12) and Tomasz Brennan-Achebe, by the real pipeline."""
    first = bundle_process(client, ehr_client, _with_ward_and_bed(sample_bundle()))
    second = bundle_process(client, ehr_client, _second_patient())
    client.logout()
    return first, second


def patient_cells(page: str) -> list[str]:
    return re.findall(r'<td[^>]*class="patient-cell"[^>]*>(.*?)</td>', page, re.S)


def test_the_queue_names_a_clinicians_patients_with_one_audit_row_per_page(
    client: Any, clinician: Any, two_patients: tuple[list[Suggestion], list[Suggestion]]
) -> None:
    first, second = two_patients
    client.force_login(clinician)
    page = client.get(QUEUE, {"status": "all"}).content.decode()
    cells = patient_cells(page)
    assert len(cells) == len(first) + len(second) >= 4
    margaret = next(c for c in cells if "Margaret Okafor-Lindqvist" in c)
    assert "MRN 4471-2290" in margaret and "years · Female" in margaret and "Ward 7B, Bed 12" in margaret
    tomasz = next(c for c in cells if "Tomasz Brennan-Achebe" in c)
    assert f"MRN {SECOND_MRN}" in tomasz and "78 years · Male" in tomasz
    [row] = AuditEvent.objects.filter(action="deid.reidentify")
    pseudonyms = sorted({s.patient_pseudonym for s in [*first, *second]})
    assert row.detail["patients"] == pseudonyms and len(pseudonyms) == 2
    assert row.detail["purpose"] == "review-queue" and row.organization == "st-elsewhere"
    assert "Okafor" not in json.dumps(row.detail) and "4471" not in json.dumps(row.detail)
    client.get(QUEUE, {"status": "all"})
    assert AuditEvent.objects.filter(action="deid.reidentify").count() == 2  # one more page, one more row


def test_each_patients_audit_trail_shows_the_queue_page_that_named_them(
    client: Any,
    clinician: Any,
    auditor: Any,
    two_patients: tuple[list[Suggestion], list[Suggestion]],
) -> None:
    """The page's one re-identification row leaves the patient field empty (it is about two patients): an
    auditor asking about either patient still finds it, in the timeline and by the patient filter."""
    first, second = two_patients
    client.force_login(clinician)
    client.get(QUEUE, {"status": "all"})
    [row] = AuditEvent.objects.filter(action="deid.reidentify")
    assert row.patient_pseudonym == ""
    client.force_login(auditor)
    for suggestion in (first[0], second[0]):
        pseudonym = suggestion.patient_pseudonym
        timeline = client.get(f"/audit/patients/{pseudonym}/")
        assert timeline.status_code == 200
        assert f"/audit/events/{row.seq}/" in timeline.content.decode()
        listed = client.get("/audit/", {"patient": pseudonym})
        assert f"/audit/events/{row.seq}/" in listed.content.decode()


def test_a_clinician_finds_patients_by_name_words_or_mrn(
    client: Any, clinician: Any, two_patients: tuple[list[Suggestion], list[Suggestion]]
) -> None:
    _, second = two_patients
    client.force_login(clinician)

    def names(query: str) -> set[str]:
        response = client.get(QUEUE, {"status": "all", "patient": query})
        assert response.status_code == 200, response.content
        return set(re.findall(r"<strong>([^<]+)</strong><br>", response.content.decode()))

    assert names("brennan") == {"Tomasz Brennan-Achebe"}
    assert names("BRENNAN-achebe") == {"Tomasz Brennan-Achebe"}
    assert names("Tomasz Brennan") == {"Tomasz Brennan-Achebe"}
    assert names(SECOND_MRN) == {"Tomasz Brennan-Achebe"}
    assert names("5582 3301") == {"Tomasz Brennan-Achebe"}
    assert names("Okafor-Lindqvist") == {"Margaret Okafor-Lindqvist"}
    assert names("margaret brennan") == set()  # every word must match the same patient
    assert names("brenn") == set()  # whole words: the index holds keyed words, not prefixes
    assert names(second[0].patient_pseudonym[:8]) == {"Tomasz Brennan-Achebe"}  # pseudonym prefix still works
    page = client.get(QUEUE).content.decode()
    assert "Patient: name, MRN or pseudonym" in page


def test_an_auditor_sees_pseudonyms_and_cannot_search_by_name(
    client: Any, auditor: Any, two_patients: tuple[list[Suggestion], list[Suggestion]]
) -> None:
    first, _ = two_patients
    client.force_login(auditor)
    page = client.get(QUEUE, {"status": "all"}).content.decode()
    assert "Okafor" not in page and "Brennan" not in page and "4471-2290" not in page
    assert first[0].patient_pseudonym[:10] in page
    assert not AuditEvent.objects.filter(action="deid.reidentify").exists()
    by_name = client.get(QUEUE, {"status": "all", "patient": "brennan"}).content.decode()
    assert patient_cells(by_name) == []
    assert client.get(QUEUE, {"patient": "Brennan-Achebe Tomasz"}).status_code == 400  # not a pseudonym
    assert patient_pseudonyms_search(user=auditor, text="brennan") == set()
    assert "Patient: name, MRN or pseudonym" not in page


def test_another_sites_clinician_cannot_find_the_patient_by_name_or_mrn(
    client: Any,
    other_site_clinician: Any,
    two_patients: tuple[list[Suggestion], list[Suggestion]],
) -> None:
    assert patient_pseudonyms_search(user=other_site_clinician, text="brennan") == set()
    assert patient_pseudonyms_search(user=other_site_clinician, text=SECOND_MRN) == set()
    client.force_login(other_site_clinician)
    page = client.get(QUEUE, {"status": "all", "patient": "brennan"}).content.decode()
    assert patient_cells(page) == []


def test_the_index_holds_keyed_hashes_and_sealed_values_only(
    two_patients: tuple[list[Suggestion], list[Suggestion]],
) -> None:
    entries = list(
        PseudonymVaultEntry.objects.filter(kind__in=[PATIENT_NAME_INDEX_KIND, PATIENT_MRN_INDEX_KIND])
    )
    kinds = sorted(e.kind for e in entries)
    # margaret, okafor, lindqvist; tomasz, brennan, achebe; and two MRNs
    assert kinds == [PATIENT_MRN_INDEX_KIND] * 2 + [PATIENT_NAME_INDEX_KIND] * 6
    for entry in entries:
        assert re.fullmatch(r"[0-9a-f]{64}", entry.pseudonym)
        stored = bytes(entry.sealed_original)
        for plain in (b"margaret", b"okafor", b"brennan", b"tomasz", b"4471-2290", SECOND_MRN.encode()):
            assert plain not in stored.lower()


def test_the_suggestion_page_shows_who_and_real_times_in_the_sites_zone(
    client: Any,
    clinician: Any,
    auditor: Any,
    organization: Organization,
    two_patients: tuple[list[Suggestion], list[Suggestion]],
) -> None:
    organization.time_zone = "America/New_York"
    organization.save()
    [news2] = [s for s in two_patients[0] if s.model_id == "news2"]
    url = f"/review/suggestions/{news2.external_id}/"
    client.force_login(clinician)
    page = client.get(url).content.decode()
    assert "Margaret Okafor-Lindqvist" in page and "4471-2290" in page and "1959-03-14" in page
    start = page.index('id="patient-heading"')
    header = page[start : page.index("</section>", start)]
    assert "years, female" in header and "Ward 7B, Bed 12" in header, header
    # The sample bundle's vital signs were taken at 2026-11-20T08:15:00+00:00: 03:15 in New York.
    assert '<time datetime="2026-11-20T08:15:00+00:00">2026-11-20 03:15 EST</time>' in page
    assert re.search(
        r"2026-11-20 03:15 EST</time></td>\s*<td[^>]*>\d+ (h|days?|weeks?|months?|years?) ago</td>", page
    )
    shift = date_shift_days(key=pseudonym_key(), pseudonym=news2.patient_pseudonym)
    shifted_day = (date(2026, 11, 20) + timedelta(days=shift)).isoformat()
    assert shifted_day not in page
    assert "Time (shifted)" not in page and "EST" in page

    client.force_login(auditor)
    as_auditor = client.get(url).content.decode()
    assert "Okafor" not in as_auditor and "2026-11-20 03:15" not in as_auditor
    assert f"{shifted_day} 08:15" in as_auditor  # the copy's own time, and said to be shifted
    assert "Time (shifted)" in as_auditor and "These times are not the real ones." in as_auditor


def test_a_site_time_zone_must_be_an_iana_name(organization: Organization) -> None:
    assert organization.time_zone == "Europe/London"  # CLINICAL_AI_SITE_TIME_ZONE's default
    organization.time_zone = "Mars/Olympus_Mons"
    with pytest.raises(ValidationError):
        organization.full_clean()
    organization.time_zone = "Asia/Kolkata"
    organization.full_clean()
