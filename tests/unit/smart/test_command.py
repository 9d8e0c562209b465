"""manage.py register_ehr_client with a PEM public key, then a token with the matching private key."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from clinical_ai.accounts.models import Organization
from clinical_ai.audit.models import AuditEvent
from integrations.smart.jwk import jwk_thumbprint
from integrations.smart.models import EhrClient
from integrations.smart.services import CLIENT_REGISTER_ACTION
from tests.unit.smart.keys import KeyPair, claims_for, ec_key, rsa_key, sign, token_form

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("register_ehr_client", *args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("key", [rsa_key(3), ec_key(3)], ids=["RSA", "EC"])
def test_register_with_a_pem_then_obtain_a_token(client: Client, tmp_path: Path, key: KeyPair) -> None:
    pem = tmp_path / "client.pub.pem"
    pem.write_bytes(key.public_pem)

    output = run(
        "--name", "St Elsewhere EHR",
        "--organization", "st-elsewhere",
        "--create-organization",
        "--scopes", "system/*.write system/*.read",
        "--public-key-pem", str(pem),
    )  # fmt: skip

    ehr = EhrClient.objects.get()
    assert f"client_id: {ehr.client_id}" in output
    assert "/auth/token" in output
    assert ehr.client_id.startswith("ehr-")
    assert ehr.organization.slug == "st-elsewhere"
    assert ehr.allowed_scopes == "system/*.write system/*.read"
    [jwk] = ehr.jwks["keys"]  # type: ignore[index]
    assert jwk["kid"] == jwk_thumbprint(jwk)
    assert "d" not in jwk

    event = AuditEvent.objects.get(action=CLIENT_REGISTER_ACTION)
    assert (event.actor_type, event.actor_id) == ("system", "manage.py register_ehr_client")
    assert event.detail["client_id"] == ehr.client_id
    assert AuditEvent.objects.filter(action="accounts.organization.create").count() == 1

    signer = KeyPair(key.private, key.alg, jwk["kid"])
    form = token_form(sign(signer, claims_for(ehr.client_id)), scope="system/Observation.c")
    response = client.post("/auth/token", urlencode(form), content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200, response.content
    assert response.json()["scope"] == "system/Observation.c"


def test_register_with_a_jwks_file_and_client_id(tmp_path: Path) -> None:
    Organization.objects.create(slug="county", name="County")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(ec_key().jwks))
    output = run(
        "--name", "County EHR", "--organization", "county", "--scopes", "system/*.rs",
        "--jwks-file", str(path), "--client-id", "county-epic",
    )  # fmt: skip
    assert "client_id: county-epic" in output
    assert EhrClient.objects.get().jwks == ec_key().jwks


def test_register_with_a_jwks_url() -> None:
    Organization.objects.create(slug="county", name="County")
    run(
        "--name", "County EHR", "--organization", "county", "--scopes", "system/*.rs",
        "--jwks-url", "https://keys.county.example/jwks.json",
    )  # fmt: skip
    ehr = EhrClient.objects.get()
    assert (ehr.jwks, ehr.jwks_url) == (None, "https://keys.county.example/jwks.json")


def test_unknown_organization_without_create_flag(tmp_path: Path) -> None:
    pem = tmp_path / "k.pem"
    pem.write_bytes(rsa_key().public_pem)
    with pytest.raises(CommandError, match="--create-organization"):
        run(
            "--name",
            "X",
            "--organization",
            "nowhere",
            "--scopes",
            "system/*.rs",
            "--public-key-pem",
            str(pem),
        )
    assert not Organization.objects.exists()


@pytest.mark.parametrize(
    ("scopes", "pem_of", "words"),
    [
        ("system/*.rs", lambda: rsa_key().private_pem, "private key"),
        ("patient/*.read", lambda: rsa_key().public_pem, "system/"),
    ],
)
def test_refusals_create_nothing(tmp_path: Path, scopes: str, pem_of: object, words: str) -> None:
    pem = tmp_path / "k.pem"
    pem.write_bytes(pem_of())  # type: ignore[operator]
    with pytest.raises(CommandError, match=words):
        run(
            "--name", "X", "--organization", "new-site", "--create-organization",
            "--scopes", scopes, "--public-key-pem", str(pem),
        )  # fmt: skip
    assert not Organization.objects.exists()
    assert not EhrClient.objects.exists()


def test_taken_client_id_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(rsa_key().jwks))
    args = ["--name", "X", "--organization", "s", "--create-organization", "--scopes", "system/*.rs"]
    run(*args, "--jwks-file", str(path), "--client-id", "same")
    with pytest.raises(CommandError, match="taken"):
        run(*args, "--jwks-file", str(path), "--client-id", "same")


# register_cds_issuer declares its key options through the same helper (integrations.smart.key_options).
@pytest.mark.parametrize(
    ("command", "other_arguments"),
    [
        ("register_ehr_client", ["--name=n", "--organization=o", "--scopes=system/*.read"]),
        ("register_cds_issuer", ["--iss=i", "--name=n", "--ehr-client=c"]),
    ],
)
def test_both_register_commands_take_one_key_option_at_most(command: str, other_arguments: list[str]) -> None:
    with pytest.raises(CommandError, match="not allowed with argument"):
        call_command(command, *other_arguments, "--jwks-url=https://k.example/j", "--public-key-pem=k.pem")


def test_a_client_needs_a_key_option() -> None:
    with pytest.raises(CommandError, match="--jwks-file --public-key-pem --jwks-url"):
        run("--name=n", "--organization=o", "--scopes=system/*.read")
