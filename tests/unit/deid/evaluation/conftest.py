"""The spaCy model and both detectors load once per test session (seconds); tests share them."""

from __future__ import annotations

import os
from typing import Any

import pytest

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")


@pytest.fixture(scope="session")
def ours() -> Any:
    from clinical_ai.deid.evaluation.detectors import ScrubberDetector
    from clinical_ai.deid.runtime import text_scrubber

    return ScrubberDetector(text_scrubber())


@pytest.fixture(scope="session")
def bare() -> Any:
    from clinical_ai.deid.engine.text.nlp import get_pipeline
    from clinical_ai.deid.evaluation.detectors import PresidioDetector, bare_presidio_analyzer

    return PresidioDetector(bare_presidio_analyzer(get_pipeline()))
