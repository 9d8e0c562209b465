from __future__ import annotations

from django import forms


class LoginForm(forms.Form):
    """Only parses the two fields; authenticating (and auditing) is ``services.user_log_in``'s job."""

    username = forms.CharField(max_length=150, widget=forms.TextInput(attrs={"autocomplete": "username"}))
    password = forms.CharField(
        max_length=4096, strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )
