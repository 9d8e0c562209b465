"""The command-line options that register a party's public keys, shared by ``register_ehr_client`` (SMART
Backend Services) and ``register_cds_issuer`` (CDS Hooks): a JWK Set file, a PEM public key, or the URL
where the party publishes its JWK Set. One of them at most; the registration service checks the keys."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from integrations.smart.jwk import JwkError, public_jwk_from_pem


@dataclass(frozen=True)
class KeyOptions:
    """What the options gave: an inline JWK Set (from a file or a PEM), else a JWKS URL, else neither."""

    jwks: dict[str, Any] | None
    jwks_url: str


def add_key_arguments(parser: CommandParser, *, required: bool, publisher: str) -> None:
    """``--jwks-file``, ``--public-key-pem`` and ``--jwks-url``, mutually exclusive. ``publisher`` names
    the party in the help text ("client", "EHR")."""
    keys = parser.add_mutually_exclusive_group(required=required)
    keys.add_argument("--jwks-file", type=Path, help="a JSON file holding a JWK Set of public keys")
    keys.add_argument("--public-key-pem", type=Path, help="a PEM public key (RSA >= 2048 bits or EC P-384)")
    keys.add_argument("--jwks-url", help=f"the https URL where the {publisher} publishes its JWK Set")


def keys_from_options(options: Mapping[str, Any]) -> KeyOptions:
    """Read the file or PEM the options name; ``CommandError`` when it cannot be read or used."""
    jwks_url = str(options.get("jwks_url") or "")
    if options.get("jwks_file") is not None:
        try:
            document = json.loads(Path(options["jwks_file"]).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read the JWK Set: {exc}") from None
        if not isinstance(document, dict):
            raise CommandError("the JWK Set file must hold a JSON object")
        return KeyOptions(jwks=document, jwks_url=jwks_url)
    if options.get("public_key_pem") is not None:
        try:
            jwk = public_jwk_from_pem(Path(options["public_key_pem"]).read_bytes())
        except OSError as exc:
            raise CommandError(f"cannot read the public key: {exc}") from None
        except JwkError as exc:
            raise CommandError(str(exc)) from None
        return KeyOptions(jwks={"keys": [jwk]}, jwks_url=jwks_url)
    return KeyOptions(jwks=None, jwks_url=jwks_url)
