"""Register an EHR as a CDS Hooks client: the iss of its JWTs, its public keys, and the SMART client its
data is ingested as."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from clinical_ai.audit.services import Actor
from integrations.cds_hooks.auth import service_base_url
from integrations.cds_hooks.registration import IssuerRegistrationError, cds_issuer_register
from integrations.smart.key_options import add_key_arguments, keys_from_options
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
        add_key_arguments(parser, required=False, publisher="EHR")
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
        keys = keys_from_options(options)
        try:
            issuer = cds_issuer_register(
                iss=options["iss"],
                name=options["name"],
                ehr_client=client,
                jwks=keys.jwks,
                jwks_url=keys.jwks_url,
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
