"""Register an EHR as a CDS Hooks client: the iss of its JWTs, its public keys, and the SMART client its
data is ingested as."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from clinical_ai.audit.services import Actor
from integrations.cds_hooks.auth import service_base_url
from integrations.cds_hooks.registration import IssuerRegistrationError, cds_issuer_register
from integrations.smart.jwk import JwkError, public_jwk_from_pem
from integrations.smart.models import EhrClient

ACTOR = Actor.system("manage.py register_cds_issuer")


class Command(BaseCommand):
    help = "Register an EHR that calls the CDS Hooks services (the iss of its JWTs and its public keys)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--iss", required=True, help="the iss claim of the EHR's JWTs")
        parser.add_argument("--name", required=True, help="a human-readable name, e.g. 'St Elsewhere Epic'")
        parser.add_argument(
            "--ehr-client",
            required=True,
            help="the SMART client id (register_ehr_client) its data is ingested as; sets the organization",
        )
        keys = parser.add_mutually_exclusive_group()
        keys.add_argument("--jwks-file", type=Path, help="a JSON file holding a JWK Set of public keys")
        keys.add_argument(
            "--public-key-pem", type=Path, help="a PEM public key (RSA >= 2048 bits or EC P-384)"
        )
        keys.add_argument("--jwks-url", help="the https URL where the EHR publishes its JWK Set")
        parser.add_argument(
            "--allowed-jku",
            action="append",
            default=[],
            help="a jku URL the JWT header may name (repeatable)",
        )
        parser.add_argument(
            "--fhir-server",
            action="append",
            default=[],
            help="a fhirServer base URL this gateway may read from with the EHR's token (repeatable)",
        )
        parser.add_argument(
            "--service-base-url", default="", help="the aud base, e.g. https://cds.example.org/cds-services"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        client = (
            EhrClient.objects.select_related("organization").filter(client_id=options["ehr_client"]).first()
        )
        if client is None:
            raise CommandError(
                f"no EHR client {options['ehr_client']!r}; register it with register_ehr_client"
            )
        try:
            issuer = cds_issuer_register(
                iss=options["iss"],
                name=options["name"],
                ehr_client=client,
                jwks=self._jwks(options),
                jwks_url=options["jwks_url"] or "",
                allowed_jku=options["allowed_jku"],
                fhir_servers=options["fhir_server"],
                service_base_url=options["service_base_url"],
                actor=ACTOR,
            )
        except IssuerRegistrationError as exc:
            raise CommandError(str(exc)) from None
        base = service_base_url(
            issuer,
            default_base_url=(settings.PUBLIC_BASE_URL or "http://localhost:8000")
            + reverse("cds_hooks:discovery"),
        )
        self.stdout.write(f"iss: {issuer.iss}")
        self.stdout.write(f"organization: {issuer.organization.slug}")
        self.stdout.write(f"discovery: {base} (aud of a discovery JWT)")
        self.stdout.write(f"service calls: {base}/<service id> (aud: that URL)")
        for key in (issuer.jwks or {}).get("keys", []):
            self.stdout.write(f"key id (kid): {key.get('kid', '-')} ({key.get('kty')})")

    def _jwks(self, options: dict[str, Any]) -> dict[str, Any] | None:
        if options["jwks_file"] is not None:
            try:
                document = json.loads(Path(options["jwks_file"]).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CommandError(f"cannot read the JWK Set: {exc}") from None
            if not isinstance(document, dict):
                raise CommandError("the JWK Set file must hold a JSON object")
            return document
        if options["public_key_pem"] is not None:
            try:
                jwk = public_jwk_from_pem(Path(options["public_key_pem"]).read_bytes())
            except OSError as exc:
                raise CommandError(f"cannot read the public key: {exc}") from None
            except JwkError as exc:
                raise CommandError(str(exc)) from None
            return {"keys": [jwk]}
        return None
