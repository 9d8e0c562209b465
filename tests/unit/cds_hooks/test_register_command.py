"""manage.py register_cds_issuer: an EHR's iss, keys and SMART client; refusals change nothing."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from clinical_ai.audit.models import AuditEvent
from integrations.cds_hooks.models import CdsIssuer
from tests.factories import EhrIdentity
from tests.unit.cds_hooks.conftest import make_key

pytestmark = pytest.mark.django_db


def test_register_with_a_jwks_file(tmp_path: Path, ehr_client: EhrIdentity) -> None:
    key = make_key("ES384")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.jwk]}), encoding="utf-8")
    out = StringIO()
    call_command(
        "register_cds_issuer",
        "--iss=https://epic.example/cds",
        "--name=Epic",
        f"--ehr-client={ehr_client.client_id}",
        f"--jwks-file={jwks}",
        "--allowed-jku=https://epic.example/jwks.json",
        "--fhir-server=https://epic.example/fhir/",
        stdout=out,
    )
    issuer = CdsIssuer.objects.get(iss="https://epic.example/cds")
    assert issuer.organization == ehr_client.client.organization
    assert issuer.fhir_servers == ["https://epic.example/fhir"]
    assert not issuer.feedback_user.is_active and not issuer.feedback_user.has_usable_password()
    assert key.kid in out.getvalue() and "/cds-services" in out.getvalue()
    event = AuditEvent.objects.get(action="cds.issuer.register")
    assert event.detail["key_source"] == "inline" and event.detail["jku_hosts"] == ["epic.example"]


@pytest.mark.parametrize(
    "args",
    [
        ["--jwks-url=http://epic.example/jwks.json"],  # plain http to a non-loopback host
        [],  # no key source at all
        ["--jwks-url=https://epic.example/jwks.json", "--fhir-server=http://epic.example/fhir"],
    ],
)
def test_refusals(ehr_client: EhrIdentity, args: list[str]) -> None:
    with pytest.raises(CommandError):
        call_command(
            "register_cds_issuer", "--iss=x", "--name=X", f"--ehr-client={ehr_client.client_id}", *args
        )
    assert not CdsIssuer.objects.exists()


def test_unknown_ehr_client() -> None:
    with pytest.raises(CommandError, match="no EHR client"):
        call_command(
            "register_cds_issuer",
            "--iss=x",
            "--name=X",
            "--ehr-client=nope",
            "--jwks-url=https://a.example/j",
        )


def test_a_private_key_is_refused(tmp_path: Path, ehr_client: EhrIdentity) -> None:
    key = make_key("RS384")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**key.jwk, "d": "secret"}]}), encoding="utf-8")
    with pytest.raises(CommandError, match="private"):
        call_command(
            "register_cds_issuer",
            "--iss=x",
            "--name=X",
            f"--ehr-client={ehr_client.client_id}",
            f"--jwks-file={jwks}",
        )
