"""New production keys, printed as environment lines: ``python manage.py generate_keys`` or
``python -m clinical_ai.keygen``.

Runs without Django settings, on purpose: settings refuse to load without these keys when DEBUG is off
(fail closed), and a fresh production host has none yet. ``manage.py`` hands this command over before it
loads settings; every other command, and the WSGI app, still load them and refuse.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from collections.abc import Sequence

from clinical_ai.core.crypto import generate_key_spec
from clinical_ai.vault.crypto import generate_vault_keys

DESCRIPTION = (
    "Print a new SECRET_KEY, encryption key ring entry, pseudonym key and vault key pair. To rotate, put the "
    "new entry first in CLINICAL_AI_ENCRYPTION_KEYS, keep the old one after it, then run "
    "`manage.py reseal_raw_resources`."
)
KEY_ID_HELP = "id for the new key (default: k<date-like random>)"


def keys_generate(*, key_id: str | None = None) -> str:
    """The lines to put in the environment (or the secret store), each ``NAME=value``."""
    key_id = key_id or f"k{secrets.token_hex(3)}"
    vault_private, vault_public = generate_vault_keys()
    return "\n".join(
        [
            f"SECRET_KEY={secrets.token_urlsafe(50)}",
            f"CLINICAL_AI_ENCRYPTION_KEYS={generate_key_spec(key_id)}",
            f"CLINICAL_AI_PSEUDONYM_KEY={secrets.token_urlsafe(32)}",
            f"CLINICAL_AI_VAULT_PUBLIC_KEY={vault_public}",
            "# web app only, never on workers:",
            f"CLINICAL_AI_VAULT_PRIVATE_KEY={vault_private}",
        ]
    )


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    parser.add_argument("--key-id", default=None, help=KEY_ID_HELP)
    args = parser.parse_args(argv)
    sys.stdout.write(keys_generate(key_id=args.key_id) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
