"""Key rotation: `reseal_raw_resources` re-seals, under the active key, the received entries, the bulk
intake's held resources and the EHR sources' signing keys; what was already under it stays as it was; each
step is audited with counts and key ids only; a source's key pair (public JWK, kid) does not change."""

from __future__ import annotations

import io
import os
import uuid
from typing import Any

import jwt
import pytest
from django.core.management import call_command
from django.test import Client

from clinical_ai.accounts.models import Organization
from clinical_ai.audit.balp import EVENT_CODES
from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.services import Actor
from clinical_ai.core.crypto import KeyRing
from clinical_ai.core.sealing import open_json, seal_json
from clinical_ai.intake.models import HeldResource, RawResource
from clinical_ai.intake.services import held_resources_reseal
from integrations.bulk.keys import public_jwk_of
from integrations.bulk.models import EhrSource
from integrations.bulk.services import source_create, source_jwks, source_keys_reseal, source_private_key
from integrations.smart.jwk import jwk_load
from tests.factories import post_fhir, sample_bundle

pytestmark = pytest.mark.django_db

ACTOR = Actor.system("tests")
OLD_KEY = os.urandom(32)
NEW_KEY = os.urandom(32)
OLD_RING = KeyRing({"old1": OLD_KEY}, "old1")
# The rotation as docs/operations.md tells it: the new key first, the old one kept after it.
ROTATED_RING = KeyRing({"new1": NEW_KEY, "old1": OLD_KEY}, "new1")
NEW_ONLY_RING = KeyRing({"new1": NEW_KEY}, "new1")


def _held(organization: Organization, resource_id: str) -> HeldResource:
    """A held resource sealed as the bulk intake seals it (``BatchWriter._held_write``)."""
    row = HeldResource(
        external_id=uuid.uuid4(),
        organization=organization,
        resource_type="Practitioner",
        resource_id=resource_id,
    )
    resource = {
        "resourceType": "Practitioner",
        "id": resource_id,
        "name": [{"family": f"Doctor-{resource_id}"}],
    }
    sealed = seal_json(resource, associated_data=row.associated_data)
    row.key_id, row.nonce, row.ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext
    row.save()
    return row


def _opened(rows: Any) -> dict[int, Any]:
    return {row.pk: open_json(row.sealed, associated_data=row.associated_data) for row in rows}


def _source(organization: Organization, name: str, algorithm: str = "ES384") -> EhrSource:
    return source_create(
        organization=organization,
        name=name,
        fhir_base_url="https://ehr.st-elsewhere.example/fhir",
        client_id="clinical-ai-gateway",
        actor=ACTOR,
        algorithm=algorithm,
    )


def test_the_new_actions_have_balp_codes() -> None:
    # The action catalogue test cannot see these (the audit call takes the action as a parameter).
    assert {"intake.raw_resources.reseal", "intake.held_resources.reseal", "bulk.source_keys.reseal"} <= set(
        EVENT_CODES
    )


def test_held_resources_are_resealed_in_audited_batches(organization: Organization, settings: Any) -> None:
    settings.ENCRYPTION_KEYRING = OLD_RING
    old_rows = [_held(organization, f"p{n}") for n in range(3)]
    settings.ENCRYPTION_KEYRING = ROTATED_RING
    current = _held(organization, "p-new")
    before = _opened(HeldResource.objects.all())
    updated_at = dict(HeldResource.objects.values_list("pk", "updated_at"))

    assert held_resources_reseal(actor=ACTOR, batch_size=2) == len(old_rows)

    assert set(HeldResource.objects.values_list("key_id", flat=True)) == {"new1"}
    settings.ENCRYPTION_KEYRING = NEW_ONLY_RING  # the old key could now leave the ring
    assert _opened(HeldResource.objects.all()) == before
    # Already under the active key: not written again. The content did not change: updated_at stays.
    unchanged = HeldResource.objects.get(pk=current.pk)
    assert (bytes(unchanged.nonce), bytes(unchanged.ciphertext)) == (
        bytes(current.nonce),
        bytes(current.ciphertext),
    )
    assert dict(HeldResource.objects.values_list("pk", "updated_at")) == updated_at

    events = AuditEvent.objects.filter(action="intake.held_resources.reseal").order_by("pk")
    assert [e.detail for e in events] == [
        {"count": 2, "from_keys": ["old1"], "to_key": "new1"},
        {"count": 1, "from_keys": ["old1"], "to_key": "new1"},
    ]
    assert all(
        (e.actor_type, e.actor_id, e.object_type) == ("system", "tests", "HeldResource") for e in events
    )
    assert held_resources_reseal(actor=ACTOR) == 0
    assert events.count() == 2


def test_source_keys_are_resealed_and_the_key_pair_stays(organization: Organization, settings: Any) -> None:
    settings.ENCRYPTION_KEYRING = OLD_RING
    old_sources = [_source(organization, "st-epic"), _source(organization, "st-cerner", "RS384")]
    jwks_before = {s.pk: source_jwks(s) for s in old_sources}
    settings.ENCRYPTION_KEYRING = ROTATED_RING
    current = _source(organization, "st-meditech")
    current_sealed = (current.private_key_nonce, current.private_key_ciphertext)
    pems = {s.pk: source_private_key(s) for s in EhrSource.objects.all()}

    assert source_keys_reseal(actor=ACTOR) == 2

    settings.ENCRYPTION_KEYRING = NEW_ONLY_RING
    for source in EhrSource.objects.filter(pk__in=[s.pk for s in old_sources]):
        assert source.private_key_key_id == "new1"
        pem = source_private_key(source)
        assert pem == pems[source.pk]  # the same key pair, sealed anew
        # Same public JWK and kid whether served from the web process's memory or derived afresh.
        assert source_jwks(source) == jwks_before[source.pk]
        assert {"keys": [public_jwk_of(pem)]} == jwks_before[source.pk]
        jwk = jwks_before[source.pk]["keys"][0]
        assert jwk["kid"] == source.key_id
        # The pulls still sign their client assertion, and the EHR's registered key verifies it.
        token = jwt.encode(
            {"iss": source.client_id}, pem, algorithm=source.algorithm, headers={"kid": source.key_id}
        )
        assert jwt.decode(token, jwk_load(jwk, source.algorithm).key, algorithms=[source.algorithm]) == {
            "iss": source.client_id
        }
    current.refresh_from_db()
    assert current.private_key_key_id == "new1"
    assert (bytes(current.private_key_nonce), bytes(current.private_key_ciphertext)) == tuple(
        bytes(v) for v in current_sealed
    )

    event = AuditEvent.objects.get(action="bulk.source_keys.reseal")
    assert event.detail == {"count": 2, "from_keys": ["old1"], "to_key": "new1"}
    assert event.object_type == "bulk.EhrSource"
    assert source_keys_reseal(actor=ACTOR) == 0
    assert AuditEvent.objects.filter(action="bulk.source_keys.reseal").count() == 1


def test_the_command_reseals_all_three_and_says_how_many(
    client: Client, ehr_token: str, organization: Organization, settings: Any
) -> None:
    settings.ENCRYPTION_KEYRING = OLD_RING
    assert post_fhir(client, ehr_token, sample_bundle()).status_code == 200
    raw_count = RawResource.objects.count()
    assert raw_count > 1
    _held(organization, "p1")
    source = _source(organization, "st-epic")
    jwks_before = source_jwks(source)
    raw_before = _opened(RawResource.objects.all())
    settings.ENCRYPTION_KEYRING = ROTATED_RING

    out = io.StringIO()
    call_command("reseal_raw_resources", stdout=out)

    assert out.getvalue().splitlines() == [
        f"re-sealed {raw_count} received entries with the active key",
        "re-sealed 1 held resource with the active key",
        "re-sealed 1 EHR source signing key with the active key",
    ]
    settings.ENCRYPTION_KEYRING = NEW_ONLY_RING
    assert _opened(RawResource.objects.all()) == raw_before
    assert _opened(HeldResource.objects.all())
    source.refresh_from_db()
    assert source_jwks(source) == jwks_before and source_private_key(source)
    actors = set(
        AuditEvent.objects.filter(action__endswith=".reseal").values_list("action", "actor_type", "actor_id")
    )
    assert actors == {
        (action, "system", "manage.py reseal_raw_resources")
        for action in (
            "intake.raw_resources.reseal",
            "intake.held_resources.reseal",
            "bulk.source_keys.reseal",
        )
    }
    # Never content or key material in the audit trail.
    details = str(
        list(AuditEvent.objects.filter(action__endswith=".reseal").values_list("detail", flat=True))
    )
    assert "Doctor-" not in details and "PRIVATE KEY" not in details

    out = io.StringIO()
    call_command("reseal_raw_resources", stdout=out)
    assert out.getvalue().splitlines() == [
        "re-sealed 0 received entries with the active key",
        "re-sealed 0 held resources with the active key",
        "re-sealed 0 EHR source signing keys with the active key",
    ]
