"""Demo data for ``manage.py demo``: one organization, one user per role, one EHR client with a key pair.

Idempotent: a second run finds what the first made. Only for DEBUG installs (the command checks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from jwt.algorithms import ECAlgorithm

from clinical_ai.accounts.models import Membership, Organization, Role
from clinical_ai.audit.services import Actor
from integrations.smart.models import EhrClient
from integrations.smart.services import ehr_client_register

DEMO_ORGANIZATION = ("demo-hospital", "Demo General Hospital")
DEMO_PASSWORDS = {
    "clinician": "demo-clinician-pass",
    "auditor": "demo-auditor-pass",
    "admin": "demo-admin-pass",
}
DEMO_CLIENT_ID = "demo-ehr"
DEMO_KID = "demo-ehr-key-1"


@dataclass(frozen=True)
class DemoEnvironment:
    organization: Organization
    client_id: str
    kid: str
    private_key_path: Path


def _demo_key(path: Path) -> dict[str, object]:
    """Create (once) the demo EHR's EC P-384 key under var/ and return its public JWK."""
    if not path.exists():
        key = ec.generate_private_key(ec.SECP384R1())
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        path.chmod(0o600)
    private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    jwk: dict[str, object] = json.loads(ECAlgorithm.to_jwk(private.public_key()))
    jwk.update({"kid": DEMO_KID, "alg": "ES384", "use": "sig"})
    return jwk


def demo_environment_ensure() -> DemoEnvironment:
    key_path = Path(settings.VAR_DIR) / "demo-ehr-client.pem"
    jwk = _demo_key(key_path)
    with transaction.atomic():
        organization, _ = Organization.objects.get_or_create(
            slug=DEMO_ORGANIZATION[0], defaults={"name": DEMO_ORGANIZATION[1]}
        )
        user_model = get_user_model()
        for role, password in DEMO_PASSWORDS.items():
            user = user_model.objects.filter(username=role).first()
            if user is None:
                user = user_model.objects.create_user(username=role, password=password)
                if role == Role.ADMIN:
                    user.is_staff = True
                    user.is_superuser = True
                    user.save(update_fields=["is_staff", "is_superuser"])
            Membership.objects.get_or_create(user=user, organization=organization, role=role)
        client = EhrClient.objects.filter(client_id=DEMO_CLIENT_ID).first()
        if client is None:
            ehr_client_register(
                name="Demo EHR",
                organization=organization,
                scopes="system/*.write system/*.read",
                jwks={"keys": [jwk]},
                client_id=DEMO_CLIENT_ID,
                actor=Actor.system("manage.py demo"),
            )
        elif client.jwks != {"keys": [jwk]}:
            # var/ was wiped and a new key made: the demo client follows its key.
            client.jwks = {"keys": [jwk]}
            client.save(update_fields=["jwks"])
    return DemoEnvironment(organization, DEMO_CLIENT_ID, DEMO_KID, key_path)
