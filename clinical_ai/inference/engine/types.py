"""Plain types shared by the model registry, the runners and the clinical models. No Django here.

A model sees only ``PatientContext``: the de-identified resources of one patient, each with the id of the
row it came from (so evidence can cite it). It answers with a ``ModelResult``: findings, each of which
becomes one Suggestion for a clinician to review.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

# CDS Hooks card indicators, also the review queue's urgency order.
Urgency = Literal["info", "warning", "critical"]
URGENCY_ORDER: dict[str, int] = {"critical": 0, "warning": 1, "info": 2}
FindingKind = Literal["risk", "problem"]
# How much of what a finding needs was recorded. "complete": every input used. "lower_bound": inputs missing,
# but the known part already reaches ``risk["band"]``: the true result is that band or worse ("at least").
# "not_scored": too little was recorded to say anything; no band, no score, no risk: "cannot be scored".
Completeness = Literal["complete", "lower_bound", "not_scored"]
COMPLETENESS_VALUES: tuple[Completeness, ...] = ("complete", "lower_bound", "not_scored")
NOT_SCORED_TEXT = "cannot be scored: not enough observations"


@dataclass(frozen=True)
class SourceResource:
    """One de-identified resource and the id of the row that holds it (``DeidentifiedResource.external_id``
    in the service; any stable string offline)."""

    ref: str
    resource: Mapping[str, Any]

    @property
    def resource_type(self) -> str:
        return str(self.resource.get("resourceType", ""))


@dataclass(frozen=True)
class PatientContext:
    """Everything a model may read about one patient: de-identified copies only."""

    patient_pseudonym: str
    resources: tuple[SourceResource, ...]

    def of_type(self, resource_type: str) -> list[SourceResource]:
        return [r for r in self.resources if r.resource_type == resource_type]


@dataclass(frozen=True)
class Finding:
    """One thing a model says about a patient; it becomes one Suggestion (pending review).

    ``key`` is stable for the same finding in the same run ("news2", "condition:<snomed code>") so a
    redelivered task never writes it twice. ``evidence`` is JSON: the inputs used (with values, units, times
    and the ``ref`` of their source), the inputs missing or stale, note excerpts with highlight offsets, the
    score and the thresholds it was compared with. ``proposal`` is a FHIR resource the clinician may accept
    (e.g. a provisional Condition); ``risk`` carries RiskAssessment details (``band``, ``score``,
    ``qualitative_risk``, ``outcome``) for risk findings.

    ``completeness`` says whether the result stands on every input it needs (see ``Completeness``), and
    ``missing_inputs`` names what was missing or out of date in words a clinician reads ("pulse",
    "temperature (over 24 h old)"). A "not_scored" finding carries no score and no band: a partial sum is a
    lower bound, and a lower bound below every trigger says nothing about the patient.
    """

    key: str
    kind: FindingKind
    urgency: Urgency
    summary: str  # under 140 characters: it is a CDS Hooks card summary too
    evidence: Mapping[str, Any]
    score: float | None = None
    proposal: Mapping[str, Any] | None = None
    risk: Mapping[str, Any] | None = None
    completeness: Completeness = "complete"
    missing_inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.completeness not in COMPLETENESS_VALUES:
            raise ValueError(f"finding {self.key!r}: unknown completeness {self.completeness!r}")
        if self.completeness != "complete" and not self.missing_inputs:
            raise ValueError(f"finding {self.key!r}: an incomplete result must say what is missing")
        if self.completeness == "not_scored" and (
            self.score is not None or any((self.risk or {}).get(k) for k in ("band", "qualitative_risk"))
        ):
            raise ValueError(f"finding {self.key!r}: a result that cannot be scored has no score or band")
        if self.completeness == "lower_bound" and not (self.risk or {}).get("band"):
            raise ValueError(f"finding {self.key!r}: a lower-bound result names the band it reaches")


@dataclass(frozen=True)
class ModelResult:
    """A model's answer for one patient. ``features`` are the input values it used, keyed by input name
    (numbers, booleans for "present", None for missing): what drift monitoring compares over time."""

    patient_pseudonym: str
    findings: tuple[Finding, ...]
    features: Mapping[str, Any] = field(default_factory=dict)
    messages: tuple[str, ...] = ()  # e.g. "no vital signs recorded": shown with the run, never PHI
    # Set when the model could not answer for this patient (it returned NaN, or raised on this patient alone):
    # this patient's run fails, audited; the rest of the batch stands. Words for the run's error, never PHI.
    failure: str = ""
    # The sealed record of the run (features_record in builtin/declarative.py): the feature vector as computed,
    # with each value's window and sources, the prediction time and the explanation. Stored encrypted with the
    # run so the result can be reproduced; never on the queue, never in logs.
    record: Mapping[str, Any] | None = None


class ClinicalModel(Protocol):
    """What a manifest's entrypoint builds. ``predict`` takes a batch of patients and returns one result per
    patient, in order. It must be pure: no database, no network, no logging of its inputs."""

    def predict(self, contexts: Sequence[PatientContext]) -> list[ModelResult]: ...
