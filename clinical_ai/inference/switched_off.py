"""Which models an admin has switched off, since when and why: what the review pages and the CDS services
say wherever a switched-off model's results, or their absence, could be read ("no alert" from a model that is
off does not mean a low score).

One selector for every reader; two queries however many models there are (the switch rows, then the audit
rows of the moments they were switched off), one when none is off.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Max

from clinical_ai.audit.models import AuditEvent
from clinical_ai.inference.models import ModelDeployment
from clinical_ai.inference.registry import catalogue

CONFIGURE_ACTION = "inference.model.configure"  # what clinical_ai.inference.switches records
ALL_URGENCIES = frozenset({"critical", "warning", "info"})


@dataclass(frozen=True)
class SwitchedOffModel:
    model_id: str
    name: str
    since: datetime  # when it was switched off (the last change of its switch if the log no longer says)
    reason: str  # the admin's, "" when none was given
    gives_scores: bool  # a risk score (no alert reads as "low score"), rather than findings
    urgencies: frozenset[str]  # what its results could be: where its silence could be misread


def _urgencies(outputs: object) -> frozenset[str]:
    """The urgencies a model's manifest says its results take; every urgency when it does not say."""
    if not isinstance(outputs, dict):
        return ALL_URGENCIES
    found: set[str] = set()
    if isinstance(outputs.get("urgency"), str):
        found.add(outputs["urgency"])
    by_band = outputs.get("urgency_by_band")
    if isinstance(by_band, dict):
        found.update(str(value) for value in by_band.values())
    return frozenset(found & ALL_URGENCIES) or ALL_URGENCIES


def models_switched_off(*, model_ids: Collection[str] | None = None) -> list[SwitchedOffModel]:
    """The catalogue's models that an admin has switched off (of ``model_ids`` when given), by name."""
    rows = ModelDeployment.objects.filter(enabled=False)
    if model_ids is not None:
        rows = rows.filter(model_id__in=sorted(model_ids))
    found = catalogue()
    switches = [row for row in rows if found.manifest(row.model_id) is not None]
    if not switches:
        return []
    switched_off_at = dict(
        AuditEvent.objects.filter(
            action=CONFIGURE_ACTION,
            object_type="Model",
            object_id__in=[row.model_id for row in switches],
            detail__enabled=False,
            detail__previous_enabled=True,
        )
        .order_by()
        .values("object_id")
        .annotate(at=Max("occurred_at"))
        .values_list("object_id", "at")
    )
    models: list[SwitchedOffModel] = []
    for row in switches:
        manifest = found.manifest(row.model_id, row.pinned_version) or found.manifest(row.model_id)
        assert manifest is not None
        outputs = dict(manifest.outputs)
        models.append(
            SwitchedOffModel(
                model_id=row.model_id,
                name=manifest.name,
                since=switched_off_at.get(row.model_id) or row.updated_at,
                reason=row.reason.strip(),
                gives_scores=outputs.get("finding") == "RiskAssessment" or "urgency_by_band" in outputs,
                urgencies=_urgencies(outputs),
            )
        )
    return sorted(models, key=lambda model: model.name.lower())
