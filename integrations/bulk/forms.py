from __future__ import annotations

from django import forms


class PullForm(forms.Form):
    """What a Pull now asks the EHR for: only what changed since the last complete pull, or everything."""

    what = forms.ChoiceField(
        choices=[
            ("changes", "Only what changed since the last complete pull"),
            ("everything", "Everything (records already stored are skipped)"),
        ],
        widget=forms.RadioSelect,
        initial="changes",
        label="What to pull",
    )

    @property
    def full(self) -> bool:
        return bool(self.cleaned_data.get("what") == "everything")


class CancelForm(forms.Form):
    """Why a pull is stopped: kept on the pull and in the audit log (a few words, no patient details)."""

    reason = forms.CharField(max_length=200, label="Why stop it", strip=True)
