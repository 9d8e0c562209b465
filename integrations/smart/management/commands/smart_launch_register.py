"""Register an EHR that may open clinical-ai from inside a patient's record (SMART App Launch, EHR launch);
list them; disable one. Every change is audited."""

from __future__ import annotations

import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from clinical_ai.accounts.models import Organization
from clinical_ai.audit.services import Actor
from integrations.smart.launch_selectors import launch_issuers_list
from integrations.smart.launch_services import (
    LAUNCH_SCOPE,
    LaunchRegistrationError,
    launch_issuer_disable,
    launch_issuer_register,
)

ACTOR = Actor.system("manage.py smart_launch_register")


class Command(BaseCommand):
    help = (
        "Register an EHR (its FHIR base URL, the iss of its launches) that may open clinical-ai for a site; "
        "--list the registered ones; --disable one."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--site", help="the slug of the site (organization) the EHR belongs to")
        parser.add_argument("--iss", help="the EHR's FHIR base URL, exactly as it sends it as iss")
        parser.add_argument("--client-id", help="the client id the EHR gave clinical-ai")
        parser.add_argument(
            "--client-secret-stdin",
            action="store_true",
            help="read a client secret from standard input (a confidential client; default: public, PKCE)",
        )
        parser.add_argument(
            "--staff-claim",
            default="fhirUser",
            help="the id_token claim naming the person (default fhirUser)",
        )
        parser.add_argument(
            "--extra-host",
            action="append",
            default=[],
            help="a host of the EHR's authorization server other than the iss's host (repeatable)",
        )
        parser.add_argument("--list", action="store_true", help="list the registered EHRs")
        parser.add_argument("--disable", action="store_true", help="stop launches from --iss")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["list"]:
            self._list()
            return
        iss = str(options["iss"] or "")
        if not iss:
            raise CommandError("--iss is required")
        try:
            if options["disable"]:
                issuer = launch_issuer_disable(iss=iss, actor=ACTOR)
                self.stdout.write(f"disabled: launches from {issuer.iss} are refused")
                return
            if not options["site"] or not options["client_id"]:
                raise CommandError("--site and --client-id are required to register")
            organization = Organization.objects.filter(slug=options["site"]).first()
            if organization is None:
                raise CommandError(f"no site {options['site']!r}")
            secret = sys.stdin.readline().strip() if options["client_secret_stdin"] else ""
            if options["client_secret_stdin"] and not secret:
                raise CommandError("--client-secret-stdin given but nothing was read from standard input")
            issuer, created = launch_issuer_register(
                organization=organization,
                iss=iss,
                client_id=str(options["client_id"]),
                client_secret=secret,
                staff_claim=str(options["staff_claim"]),
                extra_hosts=options["extra_host"],
                actor=ACTOR,
            )
        except LaunchRegistrationError as exc:
            raise CommandError(str(exc)) from None
        base = settings.PUBLIC_BASE_URL or "<PUBLIC_BASE_URL>"
        self.stdout.write(f"{'registered' if created else 'updated'}: {issuer.iss} for {organization.slug}")
        self.stdout.write(f"client: {'confidential' if issuer.secret_key_id else 'public (PKCE)'}")
        self.stdout.write(f"launch URL: {base}{reverse('smart:launch')}")
        self.stdout.write(f"redirect URI: {base}{reverse('smart:launch-callback')}")
        self.stdout.write(f"scopes: {LAUNCH_SCOPE}")
        self.stdout.write(
            f"link each member of staff with: manage.py staff_link <username> --issuer {issuer.iss} "
            "--subject Practitioner/<their id in the EHR>"
        )

    def _list(self) -> None:
        issuers = launch_issuers_list()
        if not issuers:
            self.stdout.write("no EHR is registered for launches")
        for issuer in issuers:
            state = "enabled" if issuer.enabled else "disabled"
            kind = "confidential" if issuer.secret_key_id else "public"
            self.stdout.write(
                f"{issuer.iss}  site={issuer.organization.slug}  client_id={issuer.client_id}  {kind}  "
                f"claim={issuer.staff_claim}  {state}"
            )
