"""``rows_insert``: rows saved as ``bulk_create`` saves them (defaults, ``auto_now_add``, binary values, foreign
keys, NULLs), conflicts skipped only when asked, on whichever database the suite runs on."""

from __future__ import annotations

import uuid

import pytest
from django.db import IntegrityError, transaction

from clinical_ai.accounts.models import Organization
from clinical_ai.core.rows import rows_insert
from clinical_ai.deid.models import PseudonymVaultEntry
from clinical_ai.intake.models import SeenResourceVersion

pytestmark = pytest.mark.django_db


def _entry(organization: Organization, n: int, sealed: bytes = b"\x00\xffsealed") -> PseudonymVaultEntry:
    return PseudonymVaultEntry(
        organization=organization, patient_pseudonym="p1", kind="Observation.id", pseudonym=f"ps-{n}",
        sealed_original=sealed,
    )  # fmt: skip


def test_rows_are_stored_as_bulk_create_stores_them(organization: Organization) -> None:
    rows = [_entry(organization, n, sealed=bytes([n % 256]) * 40) for n in range(1203)]
    rows_insert(PseudonymVaultEntry, rows, batch_rows=500)  # three statements, the last one short
    stored = {
        e.pseudonym: e
        for e in PseudonymVaultEntry.objects.filter(organization=organization, kind="Observation.id")
    }
    assert len(stored) == 1203
    assert bytes(stored["ps-7"].sealed_original) == bytes([7]) * 40
    assert bytes(stored["ps-1202"].sealed_original) == bytes([1202 % 256]) * 40
    assert stored["ps-0"].created_at is not None  # auto_now_add stamped
    assert stored["ps-0"].organization_id == organization.pk


def test_a_conflict_is_an_error_unless_it_is_to_be_skipped(organization: Organization) -> None:
    rows_insert(PseudonymVaultEntry, [_entry(organization, 1, sealed=b"first")])
    with pytest.raises(IntegrityError), transaction.atomic():
        rows_insert(PseudonymVaultEntry, [_entry(organization, 1, sealed=b"second")])
    rows_insert(
        PseudonymVaultEntry,
        [_entry(organization, 1, sealed=b"second"), _entry(organization, 2)],
        ignore_conflicts=True,
    )
    kept = PseudonymVaultEntry.objects.get(organization=organization, pseudonym="ps-1")
    assert bytes(kept.sealed_original) == b"first"  # the row already there stays as it was
    assert PseudonymVaultEntry.objects.filter(organization=organization, pseudonym="ps-2").exists()


def test_nullable_foreign_keys_and_nothing_to_insert(organization: Organization) -> None:
    rows_insert(SeenResourceVersion, [])
    key = uuid.uuid4().hex * 2
    rows_insert(
        SeenResourceVersion,
        [
            SeenResourceVersion(
                organization=organization, batch=None, resource_key_sha256=key, version_sha256="v" * 64
            )
        ],
    )
    seen = SeenResourceVersion.objects.get(resource_key_sha256=key)
    assert seen.batch_id is None
    assert seen.version_sha256 == "v" * 64
