from __future__ import annotations

import re

from django import forms


class LoginForm(forms.Form):
    """Only parses the two fields; authenticating (and auditing) is ``services.user_log_in``'s job."""

    username = forms.CharField(max_length=150, widget=forms.TextInput(attrs={"autocomplete": "username"}))
    password = forms.CharField(
        max_length=4096, strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )


class OtpTokenForm(forms.Form):
    """A TOTP code as an authenticator app shows it (6 or 8 digits; spaces and dashes are dropped).
    Checking it is the services' job."""

    token = forms.CharField(
        label="Code",
        max_length=16,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True, "size": 10}
        ),
    )

    def clean_token(self) -> str:
        token = re.sub(r"[\s-]", "", self.cleaned_data["token"])
        if not re.fullmatch(r"[0-9]{6}|[0-9]{8}", token):
            raise forms.ValidationError("Enter the 6-digit code your authenticator app shows.")
        return token


class OtpRemoveForm(forms.Form):
    """The password typed again to remove the second factor; checking it is ``totp_device_remove``'s job."""

    password = forms.CharField(
        max_length=4096, strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )
