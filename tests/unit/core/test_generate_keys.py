"""``manage.py generate_keys`` works on a fresh production host (DEBUG off, no key anywhere), and nothing else
does: every other command and the WSGI app still refuse to start without the keys.

Each case is a real process with a clean environment, as an operator's shell would have it: no DEBUG, no
key, the production settings module (not tests.settings, which supplies test keys).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clinical_ai.core.crypto import KeyRing
from clinical_ai.vault.crypto import open_with, private_key_from_text, public_key_from_text, seal_to

REPO = Path(__file__).resolve().parents[3]
KEY_NAMES = {
    "SECRET_KEY",
    "CLINICAL_AI_ENCRYPTION_KEYS",
    "CLINICAL_AI_PSEUDONYM_KEY",
    "CLINICAL_AI_VAULT_PUBLIC_KEY",
    "CLINICAL_AI_VAULT_PRIVATE_KEY",
}


def _fresh_host(tmp_path: Path, **variables: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "clinical_ai.settings",
        "CLINICAL_AI_VAR_DIR": str(tmp_path / "var"),
        **variables,
    }


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _keys(output: str) -> dict[str, str]:
    lines = [line for line in output.splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_generate_keys_runs_on_a_fresh_production_host(tmp_path: Path) -> None:
    done = _run(["manage.py", "generate_keys", "--key-id", "k1"], _fresh_host(tmp_path))
    assert done.returncode == 0, done.stderr
    keys = _keys(done.stdout)
    assert set(keys) == KEY_NAMES
    assert all(keys.values())
    # Usable: the key ring parses with the id asked for, and the vault pair seals and opens.
    assert KeyRing.parse(keys["CLINICAL_AI_ENCRYPTION_KEYS"]).key_ids == ["k1"]
    sealed = seal_to(public_key_from_text(keys["CLINICAL_AI_VAULT_PUBLIC_KEY"]), b"x", associated_data=b"a")
    private = private_key_from_text(keys["CLINICAL_AI_VAULT_PRIVATE_KEY"])
    assert open_with(private, sealed, associated_data=b"a") == b"x"
    # And the production settings start with them.
    checked = _run(["manage.py", "check"], _fresh_host(tmp_path, **keys))
    assert checked.returncode == 0, checked.stderr


def test_keys_differ_at_each_run(tmp_path: Path) -> None:
    first = _keys(_run(["-m", "clinical_ai.keygen"], _fresh_host(tmp_path)).stdout)
    second = _keys(_run(["-m", "clinical_ai.keygen"], _fresh_host(tmp_path)).stdout)
    assert set(first) == set(second) == KEY_NAMES
    assert not set(first.values()) & set(second.values())


@pytest.mark.parametrize(
    "args",
    [
        ["manage.py", "check"],
        ["manage.py", "migrate", "--check"],
        ["manage.py", "check", "generate_keys"],  # the name elsewhere on the line changes nothing
        ["-c", "import clinical_ai.wsgi"],  # what gunicorn loads
    ],
    ids=["check", "migrate", "check-named-generate_keys", "wsgi"],
)
def test_everything_else_still_refuses_without_keys(tmp_path: Path, args: list[str]) -> None:
    done = _run(args, _fresh_host(tmp_path))
    assert done.returncode != 0
    assert "SECRET_KEY (or SECRET_KEY_FILE) must be set when DEBUG is off" in done.stderr


@pytest.mark.parametrize(
    "missing", ["CLINICAL_AI_ENCRYPTION_KEYS", "CLINICAL_AI_PSEUDONYM_KEY", "CLINICAL_AI_VAULT_PUBLIC_KEY"]
)
def test_each_missing_key_still_refuses(tmp_path: Path, missing: str) -> None:
    keys = _keys(_run(["-m", "clinical_ai.keygen"], _fresh_host(tmp_path)).stdout)
    del keys[missing]
    done = _run(["manage.py", "check"], _fresh_host(tmp_path, **keys))
    assert done.returncode != 0
    assert f"{missing} (or {missing}_FILE) must be set when DEBUG is off" in done.stderr
