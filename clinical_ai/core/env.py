"""Small typed readers for settings taken from the environment.

A secret may be given directly (``NAME``) or as a path to a file holding it (``NAME_FILE``), the way
container orchestrators mount secrets.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigurationError(RuntimeError):
    """A setting is missing or malformed; the process must not start."""


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from exc


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_secret(name: str) -> str:
    """Read ``NAME`` or the contents of the file named by ``NAME_FILE``; empty when neither is set."""
    direct = os.environ.get(name)
    if direct:
        return direct
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigurationError(f"{name}_FILE={path!r} cannot be read: {exc}") from exc
    return ""


def env_int_map(name: str, default: Mapping[str, int], *, keys: Collection[str]) -> dict[str, int]:
    """A mapping of names to positive integers, written ``a=1,b=2``: the names given replace the defaults'
    values, the others keep them. A name outside ``keys``, a value that is not a positive integer, or an
    item without ``=`` is refused (the process must not start with a limit it did not understand)."""
    result = dict(default)
    raw = os.environ.get(name)
    if raw is None:
        return result
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        key, sep, value = (piece.strip() for piece in item.partition("="))
        if not sep or key not in keys:
            raise ConfigurationError(
                f"{name} must be a comma-separated list of name=number with names among "
                f"{', '.join(sorted(keys))}, got {item!r}"
            )
        try:
            number = int(value)
        except ValueError:
            number = 0
        if number <= 0:
            raise ConfigurationError(f"{name}: {key} must be a positive whole number, got {value!r}")
        result[key] = number
    return result
