"""The one selector of switched-off models: which, since when (the moment of the switch-off, from the audit
log), the admin's reason, whether silence reads as a low score, and a constant number of queries."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from clinical_ai.audit.services import Actor
from clinical_ai.inference.models import ModelDeployment
from clinical_ai.inference.switched_off import models_switched_off
from clinical_ai.inference.switches import model_configure

pytestmark = pytest.mark.django_db

ADMIN = Actor.system("tests")


def _at(monkeypatch: pytest.MonkeyPatch, moment: datetime) -> None:
    monkeypatch.setattr(timezone, "now", lambda: moment)


def test_nothing_is_off_by_default_in_one_query() -> None:
    with CaptureQueriesContext(connection) as queries:
        assert models_switched_off() == []
    assert len(queries.captured_queries) == 1


def test_a_switched_off_model_with_its_time_and_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    off_at = datetime(2026, 12, 5, 14, 2, tzinfo=UTC)
    with monkeypatch.context() as patch:
        _at(patch, off_at)
        model_configure(actor=ADMIN, model_id="news2", enabled=False, reason="wrong oxygen scale")
    # A later change while it is off (the reason typed again) must not move "since".
    with monkeypatch.context() as patch:
        _at(patch, datetime(2026, 12, 5, 16, 0, tzinfo=UTC))
        model_configure(actor=ADMIN, model_id="news2", enabled=False, reason="wrong oxygen scale")
    [news2] = models_switched_off()
    assert (news2.model_id, news2.name, news2.reason) == (
        "news2",
        "NEWS2 early warning score",
        "wrong oxygen scale",
    )
    assert news2.since == off_at
    assert news2.gives_scores and news2.urgencies == {"info", "warning", "critical"}
    assert models_switched_off(model_ids=["problem-list-gaps"]) == []


def test_switched_on_again_is_no_longer_listed_and_queries_do_not_grow() -> None:
    model_configure(actor=ADMIN, model_id="news2", enabled=False)
    model_configure(actor=ADMIN, model_id="problem-list-gaps", enabled=False)
    with CaptureQueriesContext(connection) as queries:
        both = models_switched_off()
    assert [m.model_id for m in both] == ["news2", "problem-list-gaps"]
    assert len(queries.captured_queries) == 2
    [gaps] = [m for m in both if m.model_id == "problem-list-gaps"]
    assert not gaps.gives_scores and gaps.urgencies == {"info"} and gaps.reason == ""
    model_configure(actor=ADMIN, model_id="news2", enabled=True)
    assert [m.model_id for m in models_switched_off()] == ["problem-list-gaps"]


def test_since_falls_back_to_the_switch_row_when_the_log_does_not_say() -> None:
    row = ModelDeployment.objects.create(model_id="news2", enabled=False, reason="set up off")
    [news2] = models_switched_off()
    assert (news2.since, news2.reason) == (row.updated_at, "set up off")
