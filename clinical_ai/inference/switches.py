"""The admins' switches on models: enable, disable (the stop switch, effective at once) and pin a version.

Each change is one audited transaction. Workers read the switch before a batch and again, under lock, in
the transaction that stores each run's suggestions, so a model switched off stores nothing more.

A shadow version runs beside the running one and stores only its results (``ShadowRun``). Promotion pins
the shadow version as the running one (the replaced version kept for a rollback); rollback pins it back.
Both are single rows read by every worker per batch and again under lock: they take effect at once.
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
    versions = _known_versions(model_id)
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


@dataclass(frozen=True)
class VersionChange:
    """A shadow, promotion or rollback change: the running version and the shadow version, before/after."""

    model_id: str
    running_version: str
    shadow_version: str
    previous_running_version: str
    previous_shadow_version: str


def _known_versions(model_id: str) -> list[str]:
    versions = [m.version for m in catalogue().versions(model_id)]
    if not versions:
        raise SwitchRefused(f"no model {model_id!r}")
    return versions


def _locked_row(model_id: str) -> tuple[ModelDeployment, str]:
    """The switch row under lock (created with the manifest's default when absent) and the version that
    runs now ("" when none does)."""
    row = ModelDeployment.objects.select_for_update().filter(model_id=model_id).first()
    before = deployment_state(model_id, row=row, lookup=False)
    if row is None:
        row = ModelDeployment(model_id=model_id, enabled=before.enabled)
    return row, before.manifest.version if before.manifest else ""


def _version_change(
    *,
    actor: Actor,
    action: str,
    row: ModelDeployment,
    running_before: str,
    shadow_before: str,
    reason: str,
    user_pk: int | None,
    request_id: str,
) -> VersionChange:
    row.reason = reason[:500]
    row.updated_by_id = user_pk
    row.save()
    after = deployment_state(row.model_id, row=row, lookup=False)
    change = VersionChange(
        model_id=row.model_id,
        running_version=after.manifest.version if after.manifest else "",
        shadow_version=row.shadow_version,
        previous_running_version=running_before,
        previous_shadow_version=shadow_before,
    )
    audit_record(
        actor=actor,
        action=action,
        object_type="Model",
        object_id=row.model_id,
        request_id=request_id,
        detail={
            "running_version": change.running_version,
            "shadow_version": change.shadow_version,
            "previous_running_version": running_before,
            "previous_shadow_version": shadow_before,
            "pinned_version": row.pinned_version,
            "reason": reason[:200],
        },
    )
    return change


def model_shadow_set(
    *,
    actor: Actor,
    model_id: str,
    version: str,
    reason: str = "",
    user_pk: int | None = None,
    request_id: str = "",
) -> VersionChange:
    """Run ``version`` in shadow beside the running version ("" stops the shadow). The caller has checked
    that the actor is an admin. Runs created from now on get a shadow run beside them."""
    versions = _known_versions(model_id)
    if version and version not in versions:
        raise SwitchRefused(f"{model_id} has no version {version!r} (known: {', '.join(versions)})")
    with transaction.atomic():
        row, running = _locked_row(model_id)
        if version and version == running:
            raise SwitchRefused(f"{model_id} {version} is the running version; shadow another one")
        shadow_before = row.shadow_version
        row.shadow_version = version
        return _version_change(
            actor=actor,
            action="inference.model.shadow",
            row=row,
            running_before=running,
            shadow_before=shadow_before,
            reason=reason,
            user_pk=user_pk,
            request_id=request_id,
        )


def model_promote(
    *, actor: Actor, model_id: str, reason: str = "", user_pk: int | None = None, request_id: str = ""
) -> VersionChange:
    """Pin the shadow version as the running one and stop the shadow; the replaced version is kept on the
    row (``previous_version``) and in the audit detail for a rollback."""
    versions = _known_versions(model_id)
    with transaction.atomic():
        row, running = _locked_row(model_id)
        shadow = row.shadow_version
        if not shadow:
            raise SwitchRefused(f"{model_id} has no shadow version to promote")
        if shadow not in versions:
            raise SwitchRefused(f"{model_id} {shadow} is no longer in the catalogue")
        row.previous_version = running
        row.pinned_version = shadow
        row.shadow_version = ""
        return _version_change(
            actor=actor,
            action="inference.model.promote",
            row=row,
            running_before=running,
            shadow_before=shadow,
            reason=reason,
            user_pk=user_pk,
            request_id=request_id,
        )


def model_rollback(
    *, actor: Actor, model_id: str, reason: str = "", user_pk: int | None = None, request_id: str = ""
) -> VersionChange:
    """Pin back the version the last promotion replaced. Refused when there is none to go back to."""
    versions = _known_versions(model_id)
    with transaction.atomic():
        row, running = _locked_row(model_id)
        previous = row.previous_version
        if not previous:
            raise SwitchRefused(f"{model_id} has no earlier version to roll back to")
        if previous not in versions:
            raise SwitchRefused(f"{model_id} {previous} is no longer in the catalogue")
        shadow_before = row.shadow_version
        row.pinned_version = previous
        row.previous_version = ""
        if row.shadow_version == previous:
            row.shadow_version = ""
        return _version_change(
            actor=actor,
            action="inference.model.rollback",
            row=row,
            running_before=running,
            shadow_before=shadow_before,
            reason=reason,
            user_pk=user_pk,
            request_id=request_id,
        )
