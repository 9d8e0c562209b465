"""Register a SMART Backend Services client (an EHR) for an organization."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.urls import reverse

from clinical_ai.accounts.models import Organization
from clinical_ai.audit.services import Actor, audit_record
from integrations.smart.key_options import add_key_arguments, keys_from_options
from integrations.smart.services import EhrClientRegistrationError, ehr_client_register

ACTOR = Actor.system("manage.py register_ehr_client")


class Command(BaseCommand):
    help = "Register an EHR client: its organization, allowed system scopes and public key(s)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="a human-readable name, e.g. 'St Elsewhere Epic'")
        parser.add_argument("--organization", required=True, help="the organization's slug")
        parser.add_argument(
            "--create-organization", action="store_true", help="create the organization if it does not exist"
        )
        parser.add_argument(
            "--organization-name", help="the name of an organization created here (default: slug)"
        )
        parser.add_argument("--scopes", required=True, help='e.g. "system/*.write system/*.read"')
        add_key_arguments(parser, required=True, publisher="client")
        parser.add_argument("--client-id", help="the client id to use (default: generated, ehr-...)")

    def handle(self, *args: Any, **options: Any) -> None:
        keys = keys_from_options(options)
        slug: str = options["organization"]
        try:
            with transaction.atomic():
                organization = Organization.objects.filter(slug=slug).first()
                if organization is None:
                    if not options["create_organization"]:
                        raise CommandError(
                            f"no organization {slug!r}; pass --create-organization to create it"
                        )
                    organization = Organization.objects.create(
                        slug=slug, name=options["organization_name"] or slug
                    )
                    audit_record(
                        actor=ACTOR,
                        action="accounts.organization.create",
                        object_type="accounts.organization",
                        object_id=str(organization.external_id),
                        organization=organization.slug,
                    )
                client = ehr_client_register(
                    name=options["name"],
                    organization=organization,
                    scopes=options["scopes"],
                    jwks=keys.jwks,
                    jwks_url=keys.jwks_url,
                    client_id=options["client_id"],
                    actor=ACTOR,
                )
        except EhrClientRegistrationError as exc:
            raise CommandError(str(exc)) from None
        token_path = reverse("smart:token")
        self.stdout.write(f"client_id: {client.client_id}")
        self.stdout.write(f"token endpoint: {settings.PUBLIC_BASE_URL}{token_path}")
        self.stdout.write(f"scopes: {client.allowed_scopes}")
        for key in (client.jwks or {}).get("keys", []):
            self.stdout.write(f"key id (kid): {key.get('kid', '-')} ({key.get('kty')})")
