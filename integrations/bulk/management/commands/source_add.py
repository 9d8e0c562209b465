"""Register an EHR source to pull from with FHIR Bulk Data: prints the JWK Set URL (and the set itself) to
register at the EHR as this gateway's client key."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from clinical_ai.accounts.models import Organization
from clinical_ai.audit.services import Actor
from integrations.bulk.keys import KeyAlgorithmRefused
from integrations.bulk.models import EhrSource
from integrations.bulk.services import SourceRefused, source_create, source_jwks

ACTOR = Actor.system("manage.py source_add")


def _list(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


class Command(BaseCommand):
    help = (
        "Register an EHR source (a FHIR server this gateway pulls from with Bulk Data $export). The gateway "
        "makes its own signing key; register the printed JWK Set URL at the EHR with the client id."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="a short name (letters, digits, '-'), e.g. st-elsewhere-epic")
        parser.add_argument("--organization", required=True, help="the organization's slug")
        parser.add_argument("--fhir-base", required=True, help="the EHR's FHIR base URL (https)")
        parser.add_argument("--client-id", required=True, help="the client id the EHR gave this gateway")
        parser.add_argument(
            "--token-url",
            default="",
            help="the EHR's token URL (default: its .well-known/smart-configuration)",
        )
        parser.add_argument("--scopes", default="system/*.rs", help='default "system/*.rs"')
        parser.add_argument("--level", choices=[c.value for c in EhrSource.Level], default="system")
        parser.add_argument("--group-id", default="", help="the group to export (with --level group)")
        parser.add_argument(
            "--types", default="", help="resource types to pull (_type), e.g. Patient,Observation"
        )
        parser.add_argument(
            "--type-filter", action="append", default=[], help="a _typeFilter query; may be repeated"
        )
        parser.add_argument(
            "--file-host", action="append", default=[], help="another host the EHR's files may be on"
        )
        parser.add_argument(
            "--interval-minutes",
            type=int,
            default=0,
            help="pull every N minutes (default 0: only when asked)",
        )
        parser.add_argument("--algorithm", choices=["ES384", "RS384"], default="ES384")

    def handle(self, *args: Any, **options: Any) -> None:
        organization = Organization.objects.filter(slug=options["organization"]).first()
        if organization is None:
            raise CommandError(f"no organization {options['organization']!r}")
        if options["interval_minutes"] < 0:
            raise CommandError("--interval-minutes must be 0 or more")
        try:
            source = source_create(
                organization=organization,
                name=options["name"],
                fhir_base_url=options["fhir_base"],
                client_id=options["client_id"],
                token_url=options["token_url"],
                scopes=options["scopes"],
                level=options["level"],
                group_id=options["group_id"],
                resource_types=_list(options["types"]),
                type_filters=options["type_filter"],
                file_hosts=options["file_host"],
                interval_minutes=options["interval_minutes"],
                algorithm=options["algorithm"],
                actor=ACTOR,
            )
        except (SourceRefused, KeyAlgorithmRefused) as exc:
            raise CommandError(str(exc)) from None
        path = reverse("bulk:source_jwks", kwargs={"source_id": source.external_id})
        self.stdout.write(f"source: {source.name} ({source.get_level_display()})")
        self.stdout.write(f"client id: {source.client_id}")
        self.stdout.write(f"key id (kid): {source.key_id} ({source.algorithm})")
        self.stdout.write(f"JWK Set URL to register at the EHR: {settings.PUBLIC_BASE_URL}{path}")
        if not settings.PUBLIC_BASE_URL:
            self.stdout.write("  (PUBLIC_BASE_URL is not set: prefix the path with this gateway's address)")
        self.stdout.write("public JWK Set (or register this instead of the URL):")
        self.stdout.write(json.dumps(source_jwks(source), indent=2))
