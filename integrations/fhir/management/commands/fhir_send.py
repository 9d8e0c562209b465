from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.fhir.client import ClientError, fetch_access_token, post_fhir


class Command(BaseCommand):
    help = (
        "Send a FHIR JSON file to a running gateway as an EHR would: get a SMART Backend Services token "
        "with the client's private key, then POST the file (a transaction/batch Bundle to [base], any other "
        "resource to [base]/[type])."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="the gateway's address")
        parser.add_argument("--client-id", required=True)
        parser.add_argument(
            "--private-key", type=Path, required=True, help="PEM private key (RSA or EC P-384)"
        )
        parser.add_argument("--kid", required=True, help="key id registered for the client")
        parser.add_argument("--scope", default="system/*.write")
        parser.add_argument("--request-id", default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        import json

        path: Path = options["file"]
        body = path.read_bytes()
        try:
            resource_type = json.loads(body.decode("utf-8-sig")).get("resourceType", "")
            document_type = json.loads(body.decode("utf-8-sig")).get("type", "")
        except ValueError as exc:
            raise CommandError(f"{path} is not JSON: {exc}") from exc
        base = options["base_url"].rstrip("/")
        try:
            token = fetch_access_token(
                token_url=f"{base}/auth/token",
                client_id=options["client_id"],
                private_key_pem=options["private_key"].read_bytes(),
                kid=options["kid"],
                scope=options["scope"],
            )
            is_system = resource_type == "Bundle" and document_type in ("transaction", "batch")
            url = f"{base}/fhir" if is_system else f"{base}/fhir/{resource_type}"
            answer = post_fhir(url=url, access_token=token, body=body, request_id=options["request_id"])
        except (ClientError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"HTTP {answer.status}")
        self.stdout.write(json.dumps(answer.body, indent=2)[:4000])
        if answer.status >= 400:
            raise CommandError(f"the gateway refused the request (HTTP {answer.status})", returncode=2)
