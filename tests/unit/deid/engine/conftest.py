"""Fixtures for the structured de-identification engine's tests."""

from __future__ import annotations

from typing import Any

import pytest

from .doubles import SAMPLE_BUNDLE, FakeScrubber, RecordingSink, load_json


@pytest.fixture
def sample_bundle() -> dict[str, Any]:
    data: dict[str, Any] = load_json(SAMPLE_BUNDLE)
    return data


@pytest.fixture
def fake_scrubber() -> FakeScrubber:
    return FakeScrubber()


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()
