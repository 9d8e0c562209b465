"""The condition vocabulary: the concepts a clinician may choose when changing a proposed Condition."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from django.conf import settings

from clinical_ai.review.selectors.evidence import mappings_of, text_of


@dataclass(frozen=True)
class VocabularyConcept:
    system: str
    code: str
    display: str

    @property
    def key(self) -> str:
        return f"{self.system}|{self.code}"


def _vocabulary_path() -> Path:
    configured = getattr(settings, "REVIEW_CONDITION_VOCABULARY", None)
    return (
        Path(configured) if configured else Path(settings.BASE_DIR) / "fixtures/vocabularies/conditions.json"
    )


@cache
def _vocabulary_at(path: Path) -> tuple[VocabularyConcept, ...]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return ()
    items = data.get("concepts") if isinstance(data, Mapping) else data
    concepts: dict[str, VocabularyConcept] = {}
    for item in mappings_of(items):
        system, code, display = (item.get(k) for k in ("system", "code", "display"))
        if all(isinstance(v, str) and v.strip() for v in (system, code)):
            concept = VocabularyConcept(str(system), str(code), text_of(display) or str(code))
            concepts.setdefault(concept.key, concept)
    return tuple(sorted(concepts.values(), key=lambda c: c.display.lower()))


def condition_vocabulary() -> tuple[VocabularyConcept, ...]:
    """The concepts a clinician may choose for a Condition (``fixtures/vocabularies/conditions.json``, a
    list or ``{"concepts": [...]}`` of ``{system, code, display}``); empty when the file is unreadable."""
    return _vocabulary_at(_vocabulary_path())
