"""The limit the bulk backfill is measured against: spaCy NER alone over the free text the de-identification
hands to its scrubber, plus the structured rules alone, each timed in one single-threaded process (one core's work).

The strings and the rules' time come from the de-identification benchmark's own collection phase
(``deid_throughput.phase_collect``: ``deidentify_entries`` with a scrubber that records what it is given
and changes nothing). NER alone is the scrubber's own fast path (tokenizer and NER through ``pipe``, the
batch size the scrubber uses) over each patient's distinct strings, as the scrubber analyses them (it
analyses identical strings of a call once): no recognizers, no replacement. Together they are the work no
pipeline can skip, so ``patients / (NER seconds + rules seconds)`` is what one process could reach at best.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _inference_process import cores_pin, django_setup
from deid_throughput import phase_collect

WARM_UP_STRINGS = 20


def _analysed_units(texts: Sequence[str]) -> list[str]:
    """What the scrubber runs NER on for these strings: XHTML narratives as their text and attribute
    values, everything else as it is; identical ones once, blank ones never."""
    from clinical_ai.deid.engine.text.xhtml import parse_xhtml

    units: list[str] = []
    for text in texts:
        document = parse_xhtml(text) if text.lstrip().startswith("<") else None
        if document is None:
            units.append(text)
        else:
            units.append(document.joined)
            units.extend(document.value_texts)
    return list(dict.fromkeys(unit for unit in units if unit.strip()))


def phase_ner(
    strings_per_patient: Sequence[Sequence[str]], *, repeat: int, cpus: Sequence[int]
) -> dict[str, Any]:
    """Time spaCy NER alone over each patient's distinct strings (the fastest of ``repeat`` passes)."""
    os.environ["DATABASE_URL"] = ""  # stores nothing
    os.environ["CELERY_BROKER_URL"] = ""
    cores = cores_pin(cpus)
    django_setup()
    from clinical_ai.deid.engine.text.nlp import VerifiedSpacyNlpEngine
    from clinical_ai.deid.runtime import text_scrubber

    scrubber = text_scrubber()
    engine = scrubber.analyzer.nlp_engine
    if not isinstance(engine, VerifiedSpacyNlpEngine):
        raise SystemExit("the scrubber's analyzer is not built on the verified spaCy engine")
    units = [_analysed_units(texts) for texts in strings_per_patient]
    for _ in engine.fast_docs(units[0][:WARM_UP_STRINGS], batch_size=scrubber.batch_size):
        pass  # warm-up
    timings: list[float] = []
    entities = 0
    for _ in range(repeat):
        entities = 0
        started = time.perf_counter()
        for patient_units in units:
            for doc in engine.fast_docs(patient_units, batch_size=scrubber.batch_size):
                entities += len(doc.ents)
        timings.append(time.perf_counter() - started)
    return {
        "seconds": min(timings),
        "all_seconds": timings,
        "units": sum(map(len, units)),
        "characters": sum(len(unit) for patient_units in units for unit in patient_units),
        "entities": entities,
        "cores": cores,
    }


def phase_rules(bundles: Sequence[Path], *, cpus: Sequence[int]) -> dict[str, Any]:
    """The structured rules alone (and the strings they hand to the scrubber)."""
    os.environ["DATABASE_URL"] = ""
    os.environ["CELERY_BROKER_URL"] = ""
    cores = cores_pin(cpus)
    collected = phase_collect(bundles)
    return {**collected, "cores": cores}
