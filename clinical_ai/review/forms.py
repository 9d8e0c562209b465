"""The review queue's filters and the sign-off form. Parsing and checking input only: the decision itself,
the password check included, is the service's."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from django import forms
from django.utils import timezone

from clinical_ai.review.fhir_decision import (
    CLINICAL_STATUSES,
    REJECTION_REASONS,
    VERIFICATION_STATUSES,
    ConditionEdit,
)
from clinical_ai.review.models import Decision, Suggestion
from clinical_ai.review.selectors.queue import (
    AGE_WINDOWS,
    RESULT_FILTERS,
    STATUS_FILTERS,
    QueueFilters,
    model_names,
)
from clinical_ai.review.selectors.suggestion import ProposedCondition
from clinical_ai.review.selectors.vocabulary import VocabularyConcept
from clinical_ai.review.signoff import SignOff

_PSEUDONYM_PREFIX = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# A name (any alphabet, accents, apostrophes, hyphens, spaces), an MRN or a pseudonym prefix.
_PATIENT_SEARCH = re.compile(r"^[\w .,'\u2019:/-]{1,64}$")
MAX_COMMENT = 2000
SIGNATURE_AUTOCOMPLETE = "one-time-code"


class QueueFilterForm(forms.Form):
    patient = forms.CharField(
        label="Patient",
        required=False,
        max_length=64,
        help_text="The pseudonym shown in the queue, or its first characters.",
    )
    model = forms.ChoiceField(label="Model", required=False)
    urgency = forms.ChoiceField(
        label="Urgency", required=False, choices=[("", "Any"), *Suggestion.Urgency.choices]
    )
    age = forms.ChoiceField(label="Created", required=False, choices=[("", "Any time"), *AGE_WINDOWS.items()])
    status = forms.ChoiceField(
        label="Status",
        required=False,
        choices=[(key, label) for key, (label, _) in STATUS_FILTERS.items()],
    )
    result = forms.ChoiceField(
        label="Result",
        required=False,
        choices=[("", "Any"), *((key, label) for key, (label, _) in RESULT_FILTERS.items())],
    )

    def __init__(
        self, *args: Any, model_ids: Sequence[str] = (), by_identity: bool = False, **kwargs: Any
    ) -> None:
        """``by_identity``: the viewer is a clinician, who may find patients by name or MRN; anyone else
        filters by pseudonym only."""
        super().__init__(*args, **kwargs)
        self.by_identity = by_identity
        if by_identity:
            self.fields["patient"].label = "Patient: name, MRN or pseudonym"
            self.fields["patient"].help_text = "A name or part of one (such as a family name), or an MRN."
        model_field = self.fields["model"]
        assert isinstance(model_field, forms.ChoiceField)
        names = model_names()
        model_field.choices = [
            ("", "Any"),
            *((model_id, names.get(model_id, model_id)) for model_id in model_ids),
        ]

    def clean_patient(self) -> str:
        value = str(self.cleaned_data.get("patient") or "").strip()
        if value and self.by_identity and not _PATIENT_SEARCH.match(value):
            raise forms.ValidationError("Type a name, an MRN or a pseudonym (letters, digits, spaces, '-').")
        if value and not self.by_identity and not _PSEUDONYM_PREFIX.match(value):
            raise forms.ValidationError(
                "Filter by the pseudonym the queue shows (letters, digits, '.', '_', ':' or '-')."
            )
        return value

    def filters(self) -> QueueFilters:
        """The filters chosen (pending suggestions when nothing is chosen); call after ``is_valid``."""
        data = self.cleaned_data if self.is_bound else {}
        return QueueFilters(
            patient=data.get("patient", ""),
            model_id=data.get("model", ""),
            urgency=data.get("urgency", ""),
            age=data.get("age", ""),
            status=data.get("status") or "pending",
            result=data.get("result", ""),
        )


class SignOffForm(forms.Form):
    """Accept, accept with changes, or reject with a coded reason; signed with the clinician's password,
    or, with ``step_up``, by signing in again at the hospital's identity provider (no password field here:
    the provider asks for it).

    For a problem (a proposed Condition), "with changes" edits the Condition within the allowed fields:
    the code (from the conditions vocabulary), clinical and verification status, onset. For a risk it is
    a comment alone, which is then required."""

    outcome = forms.ChoiceField(
        label="Decision",
        widget=forms.RadioSelect,
        choices=[
            (Decision.Outcome.ACCEPTED, "Accept"),
            (Decision.Outcome.MODIFIED, "Accept with changes"),
            (Decision.Outcome.REJECTED, "Reject"),
        ],
    )
    reason_code = forms.ChoiceField(
        label="Reason for rejecting",
        required=False,
        choices=[("", "Choose a reason"), *REJECTION_REASONS.items()],
    )
    code = forms.ChoiceField(label="Condition", required=False)
    clinical_status = forms.ChoiceField(
        label="Clinical status", required=False, choices=list(CLINICAL_STATUSES.items())
    )
    verification_status = forms.ChoiceField(
        label="Verification status", required=False, choices=list(VERIFICATION_STATUSES.items())
    )
    onset = forms.DateField(
        label="Onset date",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Optional.",
    )
    comment = forms.CharField(
        label="Comment",
        required=False,
        max_length=MAX_COMMENT,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Required when accepting a risk with changes and when the reason is 'Other'.",
    )
    password = forms.CharField(
        label="Your password",
        strip=False,
        # Typed each time, never filled in by the browser: a saved password would make signing one click.
        # Chromium ignores "off" on password fields; it fills no saved password into a one-time-code field.
        widget=forms.PasswordInput(attrs={"autocomplete": SIGNATURE_AUTOCOMPLETE}),
        help_text="Your electronic signature: signing records your name with this decision.",
    )

    def __init__(
        self,
        *args: Any,
        kind: str,
        proposal: ProposedCondition | None = None,
        vocabulary: Sequence[VocabularyConcept] = (),
        step_up: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if step_up:
            del self.fields["password"]
        self.kind = kind
        self.proposal = proposal if kind == "problem" else None
        self.concepts: dict[str, VocabularyConcept] = {}
        if self.proposal is None:
            for name in ("code", "clinical_status", "verification_status", "onset"):
                del self.fields[name]
            return
        for concept in vocabulary:
            self.concepts[concept.key] = concept
        if self.proposal.system and self.proposal.code:
            proposed = VocabularyConcept(self.proposal.system, self.proposal.code, self.proposal.display)
            self.concepts.setdefault(proposed.key, proposed)
        code_field = self.fields["code"]
        assert isinstance(code_field, forms.ChoiceField)
        code_field.choices = [(key, c.display) for key, c in self.concepts.items()]
        self.initial.setdefault("code", f"{self.proposal.system}|{self.proposal.code}")
        self.initial.setdefault(
            "clinical_status",
            self.proposal.clinical_status if self.proposal.clinical_status in CLINICAL_STATUSES else "active",
        )
        self.initial.setdefault("verification_status", "confirmed")

    def _condition_edit(self, data: dict[str, Any]) -> ConditionEdit:
        concept = self.concepts.get(str(data.get("code") or ""))
        onset = data.get("onset")
        return ConditionEdit(
            code={"system": concept.system, "code": concept.code, "display": concept.display}
            if concept is not None
            else None,
            clinical_status=str(data.get("clinical_status") or self.initial["clinical_status"]),
            verification_status=str(data.get("verification_status") or "confirmed"),
            onset=onset.isoformat() if onset else None,
        )

    def _edited(self, data: dict[str, Any]) -> bool:
        """Whether the clinician changed the proposed Condition."""
        return any(
            (data.get(name) or self.initial.get(name) or "") != (self.initial.get(name) or "")
            for name in ("code", "clinical_status", "verification_status")
        ) or bool(data.get("onset"))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        outcome = data.get("outcome")
        comment = str(data.get("comment") or "").strip()
        data["comment"] = comment
        if outcome == Decision.Outcome.REJECTED:
            if not data.get("reason_code"):
                self.add_error("reason_code", "Choose why you reject this suggestion.")
            elif data["reason_code"] == "other" and not comment:
                self.add_error("comment", "Say why: the reason 'Other' needs a comment.")
        else:
            data["reason_code"] = ""
        onset = data.get("onset")
        if onset and onset > timezone.localdate():
            self.add_error("onset", "The onset cannot be in the future.")
        if self.proposal is None:
            if outcome == Decision.Outcome.MODIFIED and not comment:
                self.add_error("comment", "Accepting a risk with changes means adding your comment.")
        elif outcome == Decision.Outcome.ACCEPTED and self._edited(data):
            self.add_error(
                "outcome", "You changed the proposed condition: choose 'Accept with changes' to sign it so."
            )
        elif outcome == Decision.Outcome.MODIFIED and not self._edited(data) and not comment:
            self.add_error("outcome", "Nothing was changed: choose 'Accept', or make your changes.")
        return data

    def sign_off(self) -> SignOff:
        """The decision as the service takes it; call after ``is_valid``."""
        data = self.cleaned_data
        outcome = str(data["outcome"])
        condition = None
        if self.proposal is not None and outcome != Decision.Outcome.REJECTED:
            condition = self._condition_edit(data if outcome == Decision.Outcome.MODIFIED else {})
        return SignOff(
            outcome=outcome,
            reason_code=str(data.get("reason_code") or ""),
            comment=str(data.get("comment") or ""),
            condition=condition,
        )
