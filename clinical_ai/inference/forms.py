"""The model switch as a form: on or off, a pinned version (or the newest), and the reason, always given."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms

NEWEST = ""


def _on(value: str) -> bool:
    return value == "on"


class ModelSwitchForm(forms.Form):
    enabled = forms.TypedChoiceField(
        label="State",
        choices=[("on", "On: runs on new data"), ("off", "Off: runs nothing more (the stop switch)")],
        coerce=_on,
        widget=forms.RadioSelect,
    )
    pinned_version = forms.ChoiceField(
        label="Version",
        required=False,
        help_text="Pin a version to keep running it when a newer one is installed.",
    )
    reason = forms.CharField(
        label="Reason",
        max_length=500,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Kept with the change and in the audit log. No patient details.",
    )

    def __init__(self, *args: Any, versions: Sequence[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["pinned_version"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [(NEWEST, "Newest (follows new manifests)"), *((v, v) for v in versions)]


def _reason_field() -> forms.CharField:
    return forms.CharField(
        label="Reason",
        max_length=500,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Kept with the change and in the audit log. No patient details.",
    )


NO_SHADOW = ""


class ShadowSetForm(forms.Form):
    """Which version runs in shadow beside the running one (results kept, no suggestions), or none."""

    version = forms.ChoiceField(label="Shadow version", required=False)
    reason = _reason_field()

    def __init__(self, *args: Any, versions: Sequence[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["version"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [(NO_SHADOW, "None (stop the shadow)"), *((v, v) for v in versions)]


class VersionActionForm(forms.Form):
    """Promotion or rollback: one button, with its reason."""

    reason = _reason_field()
