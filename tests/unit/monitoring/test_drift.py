"""Input drift from synthetic streams: quiet on a stable stream, an alert (audited once) on a shifted one."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest

from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.services import Actor
from clinical_ai.monitoring.models import DriftReference, DriftStat
from clinical_ai.monitoring.services import monitoring_compute
from tests.unit.monitoring.conftest import NOW, make_runs

pytestmark = pytest.mark.django_db
ACTOR = Actor.system("tests")


def _vitals(n: int, *, seed: int, rr_mean: float = 18.0, spo2_missing: float = 0.0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "respiratory_rate": round(rng.gauss(rr_mean, 3)),
            "spo2": None if rng.random() < spo2_missing else round(rng.gauss(96, 1.5)),
            "consciousness": rng.choice(["alert", "alert", "alert", "confusion"]),
            "on_oxygen": rng.random() < 0.2,
        }
        for _ in range(n)
    ]


def _stream(organization: Any, *, current: list[dict[str, Any]]) -> None:
    # The version's first runs, 40 days back: its reference window (14 days) closes long before now.
    make_runs(organization, _vitals(200, seed=1), at=NOW - timedelta(days=40))
    make_runs(organization, current, at=NOW - timedelta(days=3))


def _alerts() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="monitoring.drift.alert").order_by("seq"))


def test_a_stable_stream_stays_quiet(organization: Any) -> None:
    _stream(organization, current=_vitals(200, seed=2))
    summary = monitoring_compute(actor=ACTOR, now=NOW)
    names = set(DriftReference.objects.values_list("input_name", flat=True))
    assert names == {"respiratory_rate", "spo2", "consciousness", "on_oxygen"}
    rows = list(DriftStat.objects.all())
    assert len(rows) == 4 and summary.drift_rows == 4
    assert all(row.level == DriftStat.Level.STABLE for row in rows), [(r.input_name, r.psi) for r in rows]
    assert summary.drift_alerts_opened == 0 and _alerts() == []
    assert AuditEvent.objects.filter(action="monitoring.compute").count() == 1


def test_a_shifted_stream_raises_an_alert_audited_once(organization: Any) -> None:
    _stream(organization, current=_vitals(200, seed=2, rr_mean=25.0))
    summary = monitoring_compute(actor=ACTOR, now=NOW)
    rate = DriftStat.objects.get(input_name="respiratory_rate")
    assert rate.level == DriftStat.Level.ALERT and rate.psi is not None and rate.psi > 0.25
    assert rate.mean is not None and rate.mean > 23
    assert DriftStat.objects.get(input_name="spo2").level == DriftStat.Level.STABLE
    assert summary.drift_alerts_opened == 1
    [event] = _alerts()
    assert event.detail["input"] == "respiratory_rate" and event.detail["model_version"] == "1.0.0"
    assert event.actor_type == "system" and event.object_id == str(rate.pk)

    # The same period again: the row is replaced, not added; the alert is not audited again.
    monitoring_compute(actor=ACTOR, now=NOW + timedelta(hours=1))
    assert DriftStat.objects.filter(input_name="respiratory_rate").count() == 1
    assert len(_alerts()) == 1
    # The next day, still drifting: a new row continues the open alert.
    monitoring_compute(actor=ACTOR, now=NOW + timedelta(days=1))
    assert DriftStat.objects.filter(input_name="respiratory_rate", level="alert").count() == 2
    assert len(_alerts()) == 1


def test_an_input_going_missing_is_drift(organization: Any) -> None:
    _stream(organization, current=_vitals(200, seed=2, spo2_missing=0.5))
    monitoring_compute(actor=ACTOR, now=NOW)
    spo2 = DriftStat.objects.get(input_name="spo2")
    assert spo2.level == DriftStat.Level.ALERT
    assert spo2.missing_rate == pytest.approx(0.5, abs=0.1) and spo2.reference.missing_rate == 0.0


def test_the_reference_is_fixed_once(organization: Any) -> None:
    _stream(organization, current=_vitals(200, seed=2))
    monitoring_compute(actor=ACTOR, now=NOW)
    fixed = {r.input_name: (r.pk, r.counts) for r in DriftReference.objects.all()}
    make_runs(organization, _vitals(100, seed=3, rr_mean=30), at=NOW - timedelta(days=39))
    monitoring_compute(actor=ACTOR, now=NOW + timedelta(days=1))
    assert {r.input_name: (r.pk, r.counts) for r in DriftReference.objects.all()} == fixed


def test_no_reference_before_the_reference_window_closes_or_with_few_runs(organization: Any) -> None:
    make_runs(organization, _vitals(200, seed=1), at=NOW - timedelta(days=5))
    monitoring_compute(actor=ACTOR, now=NOW)
    assert not DriftReference.objects.exists()
    make_runs(organization, _vitals(10, seed=1), at=NOW - timedelta(days=5), version="2.0.0")
    monitoring_compute(actor=ACTOR, now=NOW + timedelta(days=30))
    assert not DriftReference.objects.filter(model_version="2.0.0").exists()


def test_too_few_runs_in_the_window_is_not_an_alert(organization: Any) -> None:
    _stream(organization, current=_vitals(10, seed=2, rr_mean=30.0))
    monitoring_compute(actor=ACTOR, now=NOW)
    rate = DriftStat.objects.get(input_name="respiratory_rate")
    assert rate.level == DriftStat.Level.INSUFFICIENT and rate.psi is None and rate.n == 10
    assert _alerts() == []
