from __future__ import annotations

import pytest

from clinical_ai.fhir.validation import Limits


@pytest.fixture
def limits() -> Limits:
    return Limits(max_body_bytes=1_000_000, max_bundle_entries=50, max_nesting_depth=32)
