"""The admins' switches on models: enable, disable (the stop switch, effective at once) and pin a version.

Each change is one audited transaction. Workers read the switch before a batch and again, under lock, in
the transaction that stores each run's suggestions, so a model switched off stores nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.inference.models import ModelDeployment
from clinical_ai.inference.registry import catalogue, deployment_state


class SwitchRefused(ValueError):
    """The change names an unknown model or version."""


@dataclass(frozen=True)
class SwitchChange:
    model_id: str
    enabled: bool
    pinned_version: str
    previous_enabled: bool
    previous_pinned_version: str


def model_configure(
    *,
    actor: Actor,
    model_id: str,
    enabled: bool,
    pinned_version: str = "",
    reason: str = "",
    user_pk: int | None = None,
    request_id: str = "",
) -> SwitchChange:
    """Set a model's switch. The caller has checked that the actor is an admin."""
    versions = [m.version for m in catalogue().versions(model_id)]
    if not versions:
        raise SwitchRefused(f"no model {model_id!r}")
    if pinned_version and pinned_version not in versions:
        raise SwitchRefused(f"{model_id} has no version {pinned_version!r} (known: {', '.join(versions)})")
    with transaction.atomic():
        row = ModelDeployment.objects.select_for_update().filter(model_id=model_id).first()
        before = deployment_state(model_id, row=row, lookup=False)
        if row is None:
            row = ModelDeployment(model_id=model_id)
        row.enabled = enabled
        row.pinned_version = pinned_version
        row.reason = reason[:500]
        row.updated_by_id = user_pk
        row.save()
        change = SwitchChange(model_id, enabled, pinned_version, before.enabled, before.pinned_version)
        audit_record(
            actor=actor,
            action="inference.model.configure",
            object_type="Model",
            object_id=model_id,
            request_id=request_id,
            detail={
                "enabled": enabled,
                "pinned_version": pinned_version,
                "previous_enabled": before.enabled,
                "previous_pinned_version": before.pinned_version,
                "reason": reason[:200],
            },
        )
    return change
