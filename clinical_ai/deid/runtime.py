"""Engines loaded once per process (a worker child loads spaCy and Presidio on its first job, never per task)."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Callable
from datetime import date
from functools import cache
from pathlib import Path

from django.conf import settings

from clinical_ai.deid.engine.config import AnonymizerConfig, load_config
from clinical_ai.deid.engine.rules import StructuredAnonymizer
from clinical_ai.deid.engine.text.scrubber import PresidioTextScrubber

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
_lock = threading.Lock()


def config_path(name_or_path: str) -> Path:
    """A shipped configuration by name (``inference``, ``safe-harbor``) or a path to one of the hospital's."""
    shipped = CONFIG_DIR / f"{name_or_path}.json"
    return shipped if shipped.exists() else Path(name_or_path)


def _subkey(purpose: str) -> str:
    """A key per purpose, derived from the pseudonym key, so one secret serves every worker consistently."""
    return hmac.new(settings.PSEUDONYM_KEY.encode("utf-8"), purpose.encode(), hashlib.sha256).hexdigest()


def engine_secrets() -> dict[str, str]:
    # The same keys in every process: hashed ids and references agree across workers and jobs.
    return {
        "cryptoHashKey": _subkey("cryptoHash"),
        "dateShiftKey": _subkey("dateShift"),
        "encryptKey": _subkey("encrypt")[:32],  # 32 characters: an AES-256 key as the reference reads it
    }


@cache
def anonymizer(name_or_path: str, reference_date: date | None = None) -> StructuredAnonymizer:
    """The configuration's engine, loaded once per process (and per ``reference_date``: the day rules that
    depend on today, ages over 89, count from; today when None)."""
    config: AnonymizerConfig = load_config(config_path(name_or_path))
    today: Callable[[], date] = date.today if reference_date is None else (lambda: reference_date)
    return StructuredAnonymizer(config, secrets_override=engine_secrets(), today=today)


@cache
def _scrubber() -> PresidioTextScrubber:
    return PresidioTextScrubber(pseudonym_key=settings.PSEUDONYM_KEY.encode("utf-8"))


def text_scrubber() -> PresidioTextScrubber:
    with _lock:  # the first call loads spaCy; threads of one process share the result
        return _scrubber()
