"""Start-up fails closed outside DEBUG: no secret key or no encryption key, no process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DEID_KEYS = {
    "CLINICAL_AI_PSEUDONYM_KEY": "p" * 40,
    "CLINICAL_AI_VAULT_PUBLIC_KEY": "z9sqZResR7yG795nVz55smS6wts9UWjas4ZwVkHfyTA=",
}


def _start(env_overrides: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "CLINICAL_AI_ENCRYPTION_KEYS", "DEBUG")
    }
    env.update({"DJANGO_SETTINGS_MODULE": "clinical_ai.settings", **env_overrides})
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("overrides", "missing"),
    [
        ({}, "SECRET_KEY"),
        ({"SECRET_KEY": "x" * 50}, "CLINICAL_AI_ENCRYPTION_KEYS"),
        ({"CLINICAL_AI_ENCRYPTION_KEYS": "k1:" + "A" * 43 + "="}, "SECRET_KEY"),
    ],
)
def test_refuses_to_start_without_keys_when_not_debug(overrides: dict[str, str], missing: str) -> None:
    result = _start(overrides)
    assert result.returncode != 0
    assert missing in result.stderr


def test_starts_with_keys_from_files(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s" * 50)
    (tmp_path / "keys").write_text("k1:" + "A" * 43 + "=")
    result = _start(
        {
            "SECRET_KEY_FILE": str(tmp_path / "secret"),
            "CLINICAL_AI_ENCRYPTION_KEYS_FILE": str(tmp_path / "keys"),
        }
    )
    assert result.returncode == 0, result.stderr


def test_malformed_encryption_key_is_refused() -> None:
    result = _start({"SECRET_KEY": "s" * 50, "CLINICAL_AI_ENCRYPTION_KEYS": "k1:tooshort"})
    assert result.returncode != 0
    assert "CLINICAL_AI_ENCRYPTION_KEYS" in result.stderr


@pytest.mark.parametrize("missing", ["CLINICAL_AI_PSEUDONYM_KEY", "CLINICAL_AI_VAULT_PUBLIC_KEY"])
def test_refuses_to_start_without_deid_keys(missing: str) -> None:
    result = _start(
        {"SECRET_KEY": "s" * 50, "CLINICAL_AI_ENCRYPTION_KEYS": "k1:" + "A" * 43 + "=", missing: ""}
    )
    assert result.returncode != 0
    assert missing in result.stderr
