from __future__ import annotations

from django import forms

from clinical_ai.audit.filters import AuditFilters
from clinical_ai.audit.models import ActorType, Outcome

# The console's patient search takes the start of a pseudonym (32 characters), as the review queue does.
PATIENT_PREFIX_MIN = 6
PSEUDONYM_LENGTH = 32  # clinical_ai.vault.pseudonyms.patient_pseudonym: a whole one is matched exactly
_DATETIME = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


class AuditFilterForm(forms.Form):
    """The console's search form (also the NDJSON export's query string). Parsing only. Times are UTC."""

    occurred_from = forms.DateTimeField(label="From (UTC, inclusive)", required=False, widget=_DATETIME)
    occurred_before = forms.DateTimeField(label="Before (UTC, exclusive)", required=False, widget=_DATETIME)
    actor_type = forms.ChoiceField(
        label="Actor type", required=False, choices=[("", "any"), *ActorType.choices]
    )
    # Named actor_id in the query string as before; the view turns what was typed into actors (actors_find).
    actor_id = forms.CharField(
        label="Who",
        required=False,
        max_length=128,
        help_text="a username (such as dr-ward), an EHR system's name, or an id as the log shows it",
    )
    action = forms.CharField(
        label="Action", required=False, max_length=64, help_text="exact, or a prefix ending in . or *"
    )
    outcome = forms.ChoiceField(label="Outcome", required=False, choices=[("", "any"), *Outcome.choices])
    patient = forms.CharField(
        label="Patient pseudonym",
        required=False,
        max_length=128,
        help_text=f"the whole pseudonym, or its first {PATIENT_PREFIX_MIN} characters or more",
    )
    object_type = forms.CharField(label="Object type", required=False, max_length=64)
    object_id = forms.CharField(label="Object id", required=False, max_length=64)
    request_id = forms.CharField(label="Request id", required=False, max_length=64)

    def clean_patient(self) -> str:
        value = str(self.cleaned_data.get("patient") or "").strip().lower()
        if value and len(value) < PATIENT_PREFIX_MIN:
            raise forms.ValidationError(
                f"Type at least {PATIENT_PREFIX_MIN} characters of the pseudonym: fewer would match many patients."
            )
        return value

    def actor_text(self) -> str:
        """What was typed as "Who" (a username, a name or an id): not yet an actor."""
        return str(self.cleaned_data.get("actor_id") or "").strip() if self.is_bound else ""

    def clean(self) -> dict[str, object]:
        cleaned = super().clean() or {}
        start, end = cleaned.get("occurred_from"), cleaned.get("occurred_before")
        if start and end and start >= end:
            raise forms.ValidationError("“From” must be earlier than “Before”.")
        return cleaned

    def filters(self) -> AuditFilters:
        """The search described by the (valid) form; an unbound form searches everything."""
        data = self.cleaned_data if self.is_bound else {}
        action = str(data.get("action") or "")
        prefix = action.rstrip("*") if action.endswith(("*", ".")) else ""
        patient = str(data.get("patient") or "")
        return AuditFilters(
            occurred_from=data.get("occurred_from"),
            occurred_before=data.get("occurred_before"),
            actor_type=str(data.get("actor_type") or ""),
            action="" if prefix else action,
            action_prefix=prefix,
            outcome=str(data.get("outcome") or ""),
            patient_pseudonym=patient if len(patient) >= PSEUDONYM_LENGTH else "",
            patient_prefix=patient if len(patient) < PSEUDONYM_LENGTH else "",
            object_type=str(data.get("object_type") or ""),
            object_id=str(data.get("object_id") or ""),
            request_id=str(data.get("request_id") or ""),
        )
