"""Reading what a model wrote without trusting its shape: each reader takes what it finds and gives an empty
value for what is missing or of the wrong type, never raising, so that a page always renders."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def text_of(value: Any) -> str:
    """A value as the page shows it; "" for nothing."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, Mapping):
        for key in ("display", "text", "code"):
            if isinstance(value.get(key), str) and value[key]:
                return str(value[key])
    return json.dumps(value, ensure_ascii=False, default=str)[:200]


def mapping_of(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def mappings_of(value: Any) -> list[Mapping[str, Any]]:
    """The mappings in a list; none from a string, a mapping or anything else."""
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def strings_of(value: Any) -> list[str]:
    """A string, a list or a mapping as lines of text, empty ones left out."""
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, Sequence):
        return [text_of(item) for item in value if text_of(item)]
    if isinstance(value, Mapping):
        return [f"{key}: {text_of(item)}" for key, item in value.items() if text_of(item)]
    return []


def label_of(name: str) -> str:
    """``stale_after_hours`` as "Stale after hours": a model's key named for a reader."""
    return name.replace("_", " ").capitalize()
