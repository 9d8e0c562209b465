"""Decisions per version, per week and per subgroup: a subgroup with planted overrides is flagged (and
audited once), a balanced stream flags nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.services import Actor
from clinical_ai.monitoring.models import OutcomeStat
from clinical_ai.monitoring.services import age_band, monitoring_compute
from tests.unit.monitoring.conftest import NOW, birth_date_for, decide, make_patient, make_runs, pseudonym

pytestmark = pytest.mark.django_db
ACTOR = Actor.system("tests")


def _decisions(
    organization: Any,
    job: Any,
    clinician: Any,
    *,
    age: int,
    gender: str,
    n: int,
    rejected: int,
    modified: int = 0,
) -> None:
    """``n`` decided suggestions for patients of one age and sex, spread over the last four weeks."""
    patients = [pseudonym() for _ in range(n)]
    for patient in patients:
        make_patient(job, patient, birth_date=birth_date_for(age, on=NOW.date()), gender=gender)
    runs = make_runs(organization, [{} for _ in range(n)], at=NOW - timedelta(days=30), pseudonyms=patients)
    for i, run in enumerate(runs):
        outcome = "rejected" if i < rejected else "modified" if i < rejected + modified else "accepted"
        decide(run, outcome, clinician=clinician, signed_at=NOW - timedelta(days=1 + i % 28, hours=1))


def _window(kind: str, value: str) -> OutcomeStat:
    return OutcomeStat.objects.get(period_kind="window", subgroup_kind=kind, subgroup_value=value)


def _flags() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="monitoring.subgroup.flag").order_by("seq"))


def test_a_subgroup_with_planted_overrides_is_flagged(
    organization: Any, ingest_job: Any, reviewer: Any
) -> None:
    _decisions(organization, ingest_job, reviewer, age=30, gender="female", n=40, rejected=4, modified=6)
    _decisions(organization, ingest_job, reviewer, age=50, gender="male", n=40, rejected=4, modified=6)
    _decisions(organization, ingest_job, reviewer, age=84, gender="female", n=30, rejected=21)
    summary = monitoring_compute(actor=ACTOR, now=NOW)

    oldest = _window("age_band", "80+")
    assert (oldest.n_decided, oldest.rejected) == (30, 21)
    assert oldest.override_rate == pytest.approx(0.7)
    assert oldest.ci_low is not None and oldest.ci_high is not None and oldest.ci_low < 0.7 < oldest.ci_high
    assert oldest.rest_override_rate == pytest.approx(8 / 80)
    assert oldest.p_value is not None and oldest.p_value < 1e-6
    assert oldest.flagged
    everyone = _window("all", "")
    assert (everyone.n_decided, everyone.accepted, everyone.modified, everyone.rejected) == (110, 69, 12, 29)
    assert _window("organization", organization.slug).p_value is None  # no rest to compare with
    assert {row.subgroup_value for row in OutcomeStat.objects.filter(subgroup_kind="sex")} == {
        "female",
        "male",
    }
    # Rates over time: one row per ISO week with decisions, adding up to the window.
    weeks = OutcomeStat.objects.filter(period_kind="week")
    assert sum(row.n_decided for row in weeks) == 110 and all(r.period_start.weekday() == 0 for r in weeks)

    flagged = {(e.detail["subgroup"]) for e in _flags()}
    assert "age_band=80+" in flagged
    assert summary.subgroup_flags_opened == len(flagged)
    assert len(flagged) == OutcomeStat.objects.filter(flagged=True).count()
    # The same day again, then the next day with the flag still up: audited once.
    monitoring_compute(actor=ACTOR, now=NOW + timedelta(hours=2))
    monitoring_compute(actor=ACTOR, now=NOW + timedelta(days=1))
    assert {e.detail["subgroup"] for e in _flags()} == flagged and len(_flags()) == len(flagged)


def test_a_balanced_stream_flags_nothing(organization: Any, ingest_job: Any, reviewer: Any) -> None:
    _decisions(organization, ingest_job, reviewer, age=30, gender="female", n=40, rejected=8)
    _decisions(organization, ingest_job, reviewer, age=50, gender="male", n=40, rejected=8)
    _decisions(organization, ingest_job, reviewer, age=84, gender="female", n=30, rejected=6)
    monitoring_compute(actor=ACTOR, now=NOW)
    assert OutcomeStat.objects.filter(period_kind="window").exclude(subgroup_kind="all").count() == 6
    assert not OutcomeStat.objects.filter(flagged=True).exists()
    assert _window("age_band", "80+").p_value == pytest.approx(1.0)
    assert _flags() == []


def test_organizations_are_compared(
    organization: Any, other_organization: Any, ingest_job: Any, reviewer: Any
) -> None:
    _decisions(organization, ingest_job, reviewer, age=50, gender="male", n=60, rejected=6)
    runs = make_runs(other_organization, [{} for _ in range(40)], at=NOW - timedelta(days=30))
    for i, run in enumerate(runs):
        decide(
            run, "rejected" if i < 28 else "accepted", clinician=reviewer, signed_at=NOW - timedelta(days=2)
        )
    monitoring_compute(actor=ACTOR, now=NOW)
    other = _window("organization", other_organization.slug)
    assert other.flagged and other.override_rate == pytest.approx(0.7)
    # Patients without a de-identified Patient resource are counted, as "unknown".
    assert _window("sex", "unknown").n_decided == 40
    assert _window("age_band", "unknown").n_decided == 40


def test_decisions_outside_the_window_are_left_out(organization: Any, ingest_job: Any, reviewer: Any) -> None:
    runs = make_runs(organization, [{} for _ in range(5)], at=NOW - timedelta(days=400))
    for run in runs:
        decide(run, "accepted", clinician=reviewer, signed_at=NOW - timedelta(days=300))
    monitoring_compute(actor=ACTOR, now=NOW)
    assert not OutcomeStat.objects.exists()


@pytest.mark.parametrize(
    ("birth_date", "band"),
    [
        ("2000-06-30", "18-39"),
        ("2008-03-03", "18-39"),
        ("2008-03-04", "0-17"),
        ("1940", "80+"),
        ("1970-01", "40-64"),
        ("", "unknown"),
        ("garbage", "unknown"),
        ("2030-01-01", "unknown"),
    ],
)
def test_age_band(birth_date: str, band: str) -> None:
    assert age_band(birth_date, on=NOW.date() + timedelta(days=1)) == band
