"""Monitoring statistics, stored as rows by the periodic job (``services.monitoring_compute``) so that pages
and reports read them and never recompute. No identifiers: counts, shares and rates only."""

from __future__ import annotations

from django.db import models


class DriftReference(models.Model):
    """The reference distribution of one input of one model version, fixed once: the runs of the version's
    first ``MONITORING_REFERENCE_DAYS`` days (from its first run, the enablement), taken at the first
    computation after that window has closed with enough runs. Later windows are compared with it.

    ``kind`` "numeric": ``edges`` are the inner bin edges; "categorical": ``categories`` are the reference's
    most frequent values. ``counts`` maps each bin (index as text, category, ``__other__``,
    ``__missing__``) to its count in the reference window.
    """

    class Kind(models.TextChoices):
        NUMERIC = "numeric", "Numeric"
        CATEGORICAL = "categorical", "Categorical"

    model_id = models.CharField(max_length=64)
    model_version = models.CharField(max_length=32)
    input_name = models.CharField(max_length=128)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    edges = models.JSONField(default=list, blank=True)
    categories = models.JSONField(default=list, blank=True)
    counts = models.JSONField(default=dict)
    n = models.PositiveIntegerField()
    missing_rate = models.FloatField()
    mean = models.FloatField(null=True, blank=True)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["model_id", "model_version", "input_name"], name="unique_drift_reference"
            )
        ]

    def __str__(self) -> str:
        return f"DriftReference {self.model_id} {self.model_version} {self.input_name}"


class DriftStat(models.Model):
    """One input of one version over the moving window that ends on ``period`` (one row per day: a second
    computation the same day replaces the figures), compared with its reference."""

    class Level(models.TextChoices):
        STABLE = "stable", "Stable"
        WARNING = "warning", "Moderate shift"
        ALERT = "alert", "Drift"
        INSUFFICIENT = "insufficient", "Too few runs"

    reference = models.ForeignKey(DriftReference, on_delete=models.CASCADE, related_name="stats")
    model_id = models.CharField(max_length=64)
    model_version = models.CharField(max_length=32)
    input_name = models.CharField(max_length=128)
    period = models.DateField()
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    n = models.PositiveIntegerField()
    missing_rate = models.FloatField(null=True, blank=True)
    mean = models.FloatField(null=True, blank=True)
    counts = models.JSONField(default=dict)
    psi = models.FloatField(null=True, blank=True)
    level = models.CharField(max_length=16, choices=Level.choices)
    # Set when this row opened an alert (the previous period's row was not alerting) and it was audited.
    alert_audited = models.BooleanField(default=False)
    computed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["model_id", "model_version", "input_name", "period"], name="unique_drift_stat"
            )
        ]
        indexes = [
            models.Index(fields=["model_id", "model_version", "period"], name="driftstat_model_period")
        ]

    def __str__(self) -> str:
        return f"DriftStat {self.model_id} {self.model_version} {self.input_name} {self.period} {self.level}"

    @property
    def alert(self) -> bool:
        return self.level == self.Level.ALERT


class OutcomeStat(models.Model):
    """What clinicians decided on one version's suggestions, in one period, for everyone (``all``) or one
    subgroup (age band, sex, organization). The override rate is the rejected share of decided ones, with
    its Wilson 95 % interval; a subgroup row also carries the p-value of the two-proportion z-test of its
    override rate against the rest of the version's decisions in the period, and ``flagged`` when it is
    below the Bonferroni-corrected threshold.

    ``period_kind`` "week": one ISO week (the rates over time); "window": the trailing
    ``MONITORING_OUTCOME_WINDOW_DAYS`` ending on ``period_end`` (the subgroup comparison).
    """

    class PeriodKind(models.TextChoices):
        WEEK = "week", "ISO week"
        WINDOW = "window", "Trailing window"

    class Subgroup(models.TextChoices):
        ALL = "all", "All"
        AGE_BAND = "age_band", "Age band"
        SEX = "sex", "Sex"
        ORGANIZATION = "organization", "Organization"

    model_id = models.CharField(max_length=64)
    model_version = models.CharField(max_length=32)
    period_kind = models.CharField(max_length=8, choices=PeriodKind.choices)
    period_start = models.DateField()
    period_end = models.DateField()
    subgroup_kind = models.CharField(max_length=16, choices=Subgroup.choices)
    subgroup_value = models.CharField(max_length=64, blank=True)
    n_decided = models.PositiveIntegerField()
    accepted = models.PositiveIntegerField()
    modified = models.PositiveIntegerField()
    rejected = models.PositiveIntegerField()
    override_rate = models.FloatField(null=True, blank=True)
    ci_low = models.FloatField(null=True, blank=True)
    ci_high = models.FloatField(null=True, blank=True)
    rest_override_rate = models.FloatField(null=True, blank=True)
    p_value = models.FloatField(null=True, blank=True)
    flagged = models.BooleanField(default=False)
    flag_audited = models.BooleanField(default=False)
    computed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "model_id",
                    "model_version",
                    "period_kind",
                    "period_start",
                    "period_end",
                    "subgroup_kind",
                    "subgroup_value",
                ],
                name="unique_outcome_stat",
            )
        ]
        indexes = [
            models.Index(
                fields=["model_id", "model_version", "period_kind", "period_end"], name="outcomestat_period"
            )
        ]

    def __str__(self) -> str:
        return (
            f"OutcomeStat {self.model_id} {self.model_version} {self.period_kind} {self.period_end} "
            f"{self.subgroup_kind}={self.subgroup_value}"
        )

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted / self.n_decided if self.n_decided else None

    @property
    def modification_rate(self) -> float | None:
        return self.modified / self.n_decided if self.n_decided else None
