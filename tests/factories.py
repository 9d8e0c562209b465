"""Builders for the test personas and FHIR payloads. Real keys, real tokens, no mocks."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.test import Client
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from clinical_ai.accounts.models import Organization
from clinical_ai.audit.services import Actor
from integrations.fhir.client import client_assertion
from integrations.smart.models import EhrClient
from integrations.smart.services import ehr_client_register

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_BUNDLE = ROOT / "fixtures" / "sample-bundle.json"
TOKEN_URL = "http://testserver/auth/token"


def make_organization(slug: str = "st-elsewhere", name: str | None = None) -> Organization:
    organization, _ = Organization.objects.get_or_create(slug=slug, defaults={"name": name or slug.title()})
    return organization


@dataclass(frozen=True)
class EhrIdentity:
    client: EhrClient
    private_pem: bytes
    kid: str

    @property
    def client_id(self) -> str:
        return self.client.client_id


def make_ehr_client(
    organization: Organization, *, scopes: str = "system/*.write system/*.read", alg: str = "ES384"
) -> EhrIdentity:
    if alg == "ES384":
        key: Any = ec.generate_private_key(ec.SECP384R1())
        jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    kid = f"k-{uuid.uuid4().hex[:8]}"
    jwk.update({"kid": kid, "alg": alg})
    client = ehr_client_register(
        name=f"EHR of {organization.slug}",
        organization=organization,
        scopes=scopes,
        jwks={"keys": [jwk]},
        actor=Actor.system("tests"),
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return EhrIdentity(client, pem, kid)


def obtain_token(http: Client, identity: EhrIdentity, *, scope: str = "system/*.write") -> str:
    response = http.post(
        "/auth/token",
        content_type="application/x-www-form-urlencoded",
        data=urlencode(
            {
                "grant_type": "client_credentials",
                "scope": scope,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": client_assertion(
                    client_id=identity.client_id,
                    token_url=TOKEN_URL,
                    private_key_pem=identity.private_pem,
                    kid=identity.kid,
                ),
            }
        ),
    )
    assert response.status_code == 200, response.content
    return str(response.json()["access_token"])


def sample_bundle() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SAMPLE_BUNDLE.read_text(encoding="utf-8"))
    return data


def post_fhir(
    http: Client,
    token: str,
    body: Any,
    *,
    path: str = "/fhir",
    content_type: str = "application/fhir+json",
    headers: dict[str, str] | None = None,
) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    return http.post(
        path,
        data=raw,
        content_type=content_type,
        headers={"Authorization": f"Bearer {token}", **(headers or {})},
    )
