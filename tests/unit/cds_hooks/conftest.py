"""CDS Hooks test fixtures: an EHR registered as a CDS Client with an RS384 and an ES384 key (generated
here), a signer making its JWTs, and suggestions of its patient stored the way the inference stage stores
them."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings
from django.test import Client
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from clinical_ai.accounts.models import Organization
from clinical_ai.audit.services import Actor
from clinical_ai.deid.models import PseudonymVaultEntry
from clinical_ai.deid.services import patient_reference_index_entries
from clinical_ai.review.models import Suggestion
from clinical_ai.vault.crypto import VaultSealer, public_key_from_text
from clinical_ai.vault.pseudonyms import patient_pseudonym
from integrations.cds_hooks.keys import JWKS_CACHE
from integrations.cds_hooks.models import CdsIssuer
from integrations.cds_hooks.registration import cds_issuer_register
from tests.factories import EhrIdentity
from tests.unit.review.conftest import store_finding
from tests.unit.review.findings import news2_finding, news2_manifest, problem_finding, problem_manifest

BASE = "http://testserver/cds-services"
ISS = "https://ehr.st-elsewhere.example/cds"
PATIENT_ID = "1288992"
PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": PATIENT_ID,
    "gender": "male",
    "birthDate": "1925-12-23",
}


@dataclass
class KeyPair:
    private: Any
    jwk: dict[str, Any]
    alg: str
    kid: str


def make_key(alg: str, kid: str | None = None) -> KeyPair:
    kid = kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}"
    if alg == "ES384":
        private: Any = ec.generate_private_key(ec.SECP384R1())
        jwk = json.loads(ECAlgorithm.to_jwk(private.public_key()))
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return KeyPair(private, jwk, alg, kid)


@pytest.fixture(scope="session")
def rs_key() -> KeyPair:
    return make_key("RS384")


@pytest.fixture(scope="session")
def es_key() -> KeyPair:
    return make_key("ES384")


@pytest.fixture(autouse=True)
def _fresh_jwks_cache() -> Iterator[None]:
    JWKS_CACHE.clear()
    yield
    JWKS_CACHE.clear()


@pytest.fixture(autouse=True)
def _small_budget(settings: Any) -> None:
    settings.CDS_HOOKS_MODEL_BUDGET_MS = 60


@pytest.fixture
def issuer(ehr_client: EhrIdentity, rs_key: KeyPair, es_key: KeyPair) -> CdsIssuer:
    return cds_issuer_register(
        iss=ISS,
        name="St Elsewhere EHR",
        ehr_client=ehr_client.client,
        jwks={"keys": [rs_key.jwk, es_key.jwk]},
        actor=Actor.system("tests"),
    )


Signer = Callable[..., str]


def sign_jwt(
    key: KeyPair,
    *,
    aud: str | list[str],
    iss: str = ISS,
    lifetime: int = 240,
    iat_offset: int = 0,
    drop: tuple[str, ...] = (),
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": iss,
        "sub": "ehr-client-7",
        "aud": aud,
        "iat": now + iat_offset,
        "exp": now + iat_offset + lifetime,
        "jti": str(uuid.uuid4()),
        **claims,
    }
    for name in drop:
        payload.pop(name, None)
    return jwt.encode(
        payload, key.private, algorithm=key.alg, headers={"kid": key.kid, "typ": "JWT", **(headers or {})}
    )


@pytest.fixture
def sign(es_key: KeyPair) -> Signer:
    def make(path: str = "", key: KeyPair | None = None, **kwargs: Any) -> str:
        return sign_jwt(key or es_key, aud=BASE + path, **kwargs)

    return make


def call(http: Client, path: str, body: Any, token: str | None, **headers: str) -> Any:
    extra = {"Authorization": f"Bearer {token}"} if token else {}
    return http.post(
        f"/cds-services{path}",
        data=json.dumps(body).encode("utf-8"),
        content_type="application/json",
        headers={**extra, **headers},
    )


def hook_body(hook: str = "patient-view", **overrides: Any) -> dict[str, Any]:
    context: dict[str, Any] = {"userId": "Practitioner/example", "patientId": PATIENT_ID}
    if hook in ("order-sign", "order-select"):
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection", "entry": []}
    if hook == "order-select":
        context["selections"] = []
    if hook == "encounter-discharge":
        context["encounterId"] = "89284"
    body: dict[str, Any] = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": "https://ehr.example.org/fhir",
        "context": context,
        "prefetch": {"patient": dict(PATIENT)},
    }
    body.update(overrides)
    return body


def ehr_pseudonym(organization: Organization, patient_id: str = PATIENT_ID) -> str:
    """The pseudonym the pipeline gives a patient known only by its EHR id (no MRN)."""
    return patient_pseudonym(
        key=settings.PSEUDONYM_KEY.encode("utf-8"),
        organization=organization.slug,
        identity=f"Patient/{patient_id}",
    )


@pytest.fixture
def risk_suggestion(organization: Organization) -> Suggestion:
    pseudonym = ehr_pseudonym(organization)
    return store_finding(organization, news2_finding(pseudonym), news2_manifest(), pseudonym=pseudonym)


@pytest.fixture
def problem_suggestion(organization: Organization) -> Suggestion:
    return store_finding(
        organization, problem_finding(), problem_manifest(), pseudonym=ehr_pseudonym(organization)
    )


def patient_seen(organization: Organization, patient_id: str = PATIENT_ID) -> None:
    """Make the gateway know the EHR's ``Patient/<id>`` as the de-identification stage does (the vault's
    patient_reference index): a hook call for them asks for no refresh."""
    pseudonym = ehr_pseudonym(organization, patient_id)
    PseudonymVaultEntry.objects.bulk_create(
        patient_reference_index_entries(
            organization=organization,
            originals={(pseudonym, "patient_reference", pseudonym): f"Patient/{patient_id}"},
            sealer=VaultSealer(public_key_from_text(settings.VAULT_PUBLIC_KEY)),
        )
    )
