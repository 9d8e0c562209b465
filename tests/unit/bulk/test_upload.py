"""An admin sends an NDJSON file from the EHR sources page, by persona: streamed into a batch of their site
(never held whole), refused for another site, a clinician, no CSRF token, too large, empty; malformed lines
named by number while the rest is stored; one audit event per upload, without the file's name."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from clinical_ai.accounts.models import Organization, Role
from clinical_ai.audit.models import AuditEvent
from clinical_ai.intake.models import BulkBatch, IngestJob, RawResource
from integrations.bulk.uploads import NdjsonUploadHandler
from tests.factories import make_organization
from tests.unit.audit.personas import make_user

pytestmark = pytest.mark.django_db

FILE_NAME = "smith-john-2026.ndjson"  # a file name may name a patient: never stored nor audited


def _patient(number: int) -> list[dict[str, Any]]:
    pid = f"p{number}"
    return [
        {"resourceType": "Patient", "id": pid, "name": [{"family": f"Doe{number}", "given": ["Jan"]}],
         "birthDate": "1970-01-0" + str(number % 9 + 1)},
        {"resourceType": "Observation", "id": f"o{number}", "status": "final",
         "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
         "subject": {"reference": f"Patient/{pid}"},
         "valueQuantity": {"value": 70 + number, "unit": "/min"}},
    ]  # fmt: skip


def _ndjson(*lines: Any) -> bytes:
    return b"".join(
        (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines
    )


@pytest.fixture
def site_a() -> Organization:
    return make_organization("st-elsewhere", "St Elsewhere General")


@pytest.fixture
def site_b() -> Organization:
    return make_organization("county-hospital", "County Hospital")


def _client(user: Any, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def _send(client: Client, data: bytes, site: str = "st-elsewhere", **extra: Any) -> Any:
    upload = SimpleUploadedFile(FILE_NAME, data, content_type="application/fhir+ndjson")
    # As the page's form sends them: the token and the site before the file.
    return client.post("/bulk/upload", {**extra, "site": site, "file": upload}, follow=True)


def _events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="bulk.upload").order_by("seq"))


def test_an_admin_sends_a_file_and_its_patients_are_queued(site_a: Organization) -> None:
    admin = make_user("admin-abe", site_a, Role.ADMIN, is_staff=True)
    client = _client(admin)
    page = client.get("/bulk/sources/").content.decode()
    assert "Send an NDJSON file" in page and 'name="site" value="st-elsewhere"' in page
    answer = _send(client, _ndjson(*_patient(1), *_patient(2)))
    html = answer.content.decode()
    assert answer.status_code == 200
    assert f"{FILE_NAME}: 4 lines read, 4 records stored for 2 patients." in html
    batch = BulkBatch.objects.get()
    assert batch.organization == site_a and batch.origin == BulkBatch.Origin.FILE
    assert batch.label == "File sent by admin-abe" and batch.status == BulkBatch.Status.PROCESSING
    assert IngestJob.objects.filter(batch=batch, status=IngestJob.Status.QUEUED).count() == 2
    assert "File sent by admin-abe" in html  # in the list of recent batches
    (event,) = _events()
    assert event.outcome == "success" and event.organization == "st-elsewhere"
    assert event.detail["bytes"] == len(_ndjson(*_patient(1), *_patient(2)))
    assert event.detail["resources_staged"] == 4 and event.detail["patients_queued"] == 2
    assert "smith" not in json.dumps(event.detail) and "smith" not in batch.label
    assert all("smith" not in json.dumps(e.detail) for e in AuditEvent.objects.all())


def test_an_admin_of_another_site_cannot_send_into_it(site_a: Organization, site_b: Organization) -> None:
    other = make_user("admin-bea", site_b, Role.ADMIN, is_staff=True)
    answer = _send(_client(other), _ndjson(*_patient(1)), site="st-elsewhere")
    assert answer.status_code == 403
    assert not BulkBatch.objects.exists() and not RawResource.objects.exists()
    (event,) = _events()
    assert event.outcome != "success" and event.detail == {"bytes": 0, "refused": "not_admin"}
    assert 'value="st-elsewhere"' not in _client(other).get("/bulk/sources/").content.decode()


def test_a_clinician_gets_a_recorded_403_and_anonymous_signs_in(site_a: Organization) -> None:
    clinician = make_user("dr-ward", site_a, Role.CLINICIAN)
    assert _send(_client(clinician), _ndjson(*_patient(1))).status_code == 403
    assert not BulkBatch.objects.exists()
    (event,) = _events()
    assert event.outcome != "success" and event.actor_id == str(clinician.pk)
    upload = SimpleUploadedFile(FILE_NAME, _ndjson(*_patient(1)))
    anonymous = Client().post("/bulk/upload", {"site": "st-elsewhere", "file": upload})
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    assert _client(clinician).get("/bulk/upload").status_code == 405


def test_csrf_is_enforced_and_nothing_is_stored_without_the_token(site_a: Organization) -> None:
    admin = make_user("admin-abe", site_a, Role.ADMIN, is_staff=True)
    client = _client(admin, enforce_csrf_checks=True)
    assert _send(client, _ndjson(*_patient(1))).status_code == 403  # no CSRF cookie yet
    client.get("/bulk/sources/")  # the cookie is set; the form's token is still not sent
    assert _send(client, _ndjson(*_patient(1))).status_code == 403
    assert not BulkBatch.objects.exists() and not RawResource.objects.exists()
    assert [e.detail.get("refused") for e in _events()] == ["csrf", "csrf"]
    token = client.cookies["csrftoken"].value
    sent = _send(client, _ndjson(*_patient(1)), csrfmiddlewaretoken=token)
    assert sent.status_code == 200, [e.detail for e in _events()]
    assert BulkBatch.objects.count() == 1


def test_too_large_and_empty_files_are_refused_clearly(site_a: Organization, settings: Any) -> None:
    admin = make_user("admin-abe", site_a, Role.ADMIN, is_staff=True)
    client = _client(admin)
    settings.BULK_MAX_FILE_BYTES = 200 * 1024
    big = _ndjson(*_patient(1)) + b"\n" * (300 * 1024)
    html = _send(client, big).content.decode()
    assert f"{FILE_NAME}: the file is larger than the 200 KB allowed; nothing was stored." in html
    assert not BulkBatch.objects.exists()
    html = _send(client, b"").content.decode()
    assert f"{FILE_NAME} is empty; nothing was stored." in html
    html = _send(client, b"not json\n{}\n").content.decode()
    assert "none of its 2 lines is a FHIR R4 record that can be used" in html
    assert "line 1: not readable (not JSON)" in html and "nothing was stored" in html
    assert BulkBatch.objects.get().status == BulkBatch.Status.CANCELLED
    assert [e.detail["refused"] for e in _events()] == ["too_large", "empty", "no_usable_line"]
    assert not RawResource.objects.exists()


def test_malformed_lines_are_named_and_the_rest_is_stored(site_a: Organization) -> None:
    admin = make_user("admin-abe", site_a, Role.ADMIN, is_staff=True)
    first, second = _patient(1), _patient(2)
    data = _ndjson(first[0], b'{"resourceType": "Observation", "id": ', first[1], b"[1, 2]", *second)
    html = _send(_client(admin), data).content.decode()
    assert "6 lines read, 4 records stored for 2 patients, 2 lines refused" in html
    assert "line 2: not readable (not JSON); line 4: not a FHIR record" in html
    batch = BulkBatch.objects.get()
    assert [e["line"] for e in batch.error_lines] == [2, 4]
    assert batch.resources_staged == 4


def test_the_upload_is_streamed_with_a_bounded_buffer(site_a: Organization, monkeypatch: Any) -> None:
    """A multi-MB file goes through in chunks: the most held at once is one chunk, not the file."""
    admin = make_user("admin-abe", site_a, Role.ADMIN, is_staff=True)
    handlers: list[NdjsonUploadHandler] = []
    original = NdjsonUploadHandler

    def recording(*args: Any, **kwargs: Any) -> NdjsonUploadHandler:
        handler = original(*args, **kwargs)
        handlers.append(handler)
        return handler

    monkeypatch.setattr("integrations.bulk.views.NdjsonUploadHandler", recording)
    # 4 MB: the same Patient, padded to 40 KB a line, 100 times (the 99 repeats skipped as already stored).
    line = json.dumps(_patient(1)[0]).encode()[:-1] + b" " * 40_000 + b"}\n"
    data = line * 100
    html = _send(_client(admin), data).content.decode()
    assert "100 lines read, 1 records stored for 1 patient, 99 already stored before (skipped)" in html
    (handler,) = handlers
    assert 0 < handler.largest_chunk <= handler.chunk_size + len(line)
    assert handler.largest_chunk < len(data) // 10


def test_a_file_larger_than_its_declared_body_allows_is_cancelled(
    site_a: Organization, settings: Any
) -> None:
    """Within the form's allowance but past the cap once read: the batch is cancelled, no patient queued."""
    admin = make_user("admin-abe", site_a, Role.ADMIN, is_staff=True)
    settings.BULK_MAX_FILE_BYTES = 1000
    data = _ndjson(*_patient(1), *_patient(2), *_patient(3), *_patient(4))
    assert 1000 < len(data) < 1000 + 64 * 1024
    html = _send(_client(admin), data).content.decode()
    assert "the file is larger than the 1,000 bytes allowed; nothing was stored" in html
    batch = BulkBatch.objects.get()
    assert batch.status == BulkBatch.Status.CANCELLED
    assert not RawResource.objects.exists() and not IngestJob.objects.filter(status="queued").exists()
    assert _events()[0].detail["refused"] == "too_large"
