#!/usr/bin/env python
import os
import sys
from pathlib import Path


def main() -> None:
    if sys.argv[1:2] == ["generate_keys"]:
        # Before settings load: outside DEBUG they refuse to load without the very keys this prints, and a
        # fresh production host has none yet. Every other command loads them, and refuses, as before.
        from clinical_ai.keygen import main as keygen

        raise SystemExit(keygen(sys.argv[2:], prog=f"{Path(sys.argv[0]).name} generate_keys"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinical_ai.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
