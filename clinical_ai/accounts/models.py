from __future__ import annotations

import uuid
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


def default_site_time_zone() -> str:
    return str(settings.SITE_TIME_ZONE)


def validate_time_zone(value: str) -> None:
    """An IANA time zone name this machine knows ("Europe/London", "America/New_York")."""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            "%(value)s is not a time zone name such as Europe/London.", params={"value": value}
        ) from None


class Organization(models.Model):
    """A site (hospital, clinic) whose data and clinicians belong together. Access is scoped by it."""

    external_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    time_zone = models.CharField(
        max_length=64,
        default=default_site_time_zone,
        validators=[validate_time_zone],
        help_text="The site's IANA time zone (such as Europe/London): clinicians see patients' times in it.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The site's time zone; the default one if the stored name is no longer known here."""
        try:
            return zoneinfo.ZoneInfo(self.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return zoneinfo.ZoneInfo(default_site_time_zone())


class Role(models.TextChoices):
    CLINICIAN = "clinician", "Clinician"
    AUDITOR = "auditor", "Auditor"
    ADMIN = "admin", "Administrator"


class Membership(models.Model):
    """A user's role at one organization; a user may work at several sites."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)

    class Source(models.TextChoices):
        GRANTED = "granted", "Granted here (admin or manage.py)"
        IDENTITY_PROVIDER = "idp", "From the identity provider's groups"

    # Where the role came from: the identity provider's groups are re-read at every sign-in and re-check,
    # and only the memberships they made are taken away when a group goes; a role granted here stays.
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.GRANTED)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "organization", "role"], name="unique_membership_role"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}@{self.organization_id}:{self.role}"


class LoginThrottle(models.Model):
    """Consecutive failed attempts at one secret, counted in the database so that every web process (and
    every machine) sees the same count: a per-process cache would give an attacker N tries per process.

    ``scope`` says what is counted: sign-in attempts per username (``login-user``, keyed by a keyed hash of
    the name typed, so unknown names are counted too and never stored), per client address (``login-ip``)
    or wrong e-signature passwords per user (``signature``, keyed by the user's id). ``user`` is set when
    the key names an account, for the admin's list; it says nothing to the person signing in.
    """

    class Scope(models.TextChoices):
        LOGIN_USER = "login-user", "Sign-in (username)"
        LOGIN_IP = "login-ip", "Sign-in (client address)"
        SIGNATURE = "signature", "E-signature password"

    scope = models.CharField(max_length=16, choices=Scope.choices)
    key = models.CharField(max_length=128)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    failures = models.PositiveIntegerField(default=0)
    window_started_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    locked_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "key"], name="unique_login_throttle_key")]

    def __str__(self) -> str:
        return f"{self.scope}:{self.key[:12]}"


class ExternalIdentity(models.Model):
    """Who a staff account is at an identity provider: the hospital's OpenID provider (``sub`` of its
    id_tokens) or an EHR's SMART authorization server (the value of its configured claim, ``fhirUser`` by
    default, such as ``Practitioner/123``). Signing in through that issuer finds the account by this pair
    alone, never by a name or an e-mail address that the provider lets people change."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="identities")
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="unique_external_identity"),
        ]
        verbose_name_plural = "external identities"

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"


class GroupRole(models.Model):
    """A group of the hospital's identity provider (a value of its groups claim) that gives a role at a
    site. Memberships of single sign-on accounts are made from these at every sign-in and re-check: a
    person removed from the group loses the role."""

    group = models.CharField(max_length=255)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="group_roles")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["group", "organization", "role"], name="unique_group_role"),
        ]

    def __str__(self) -> str:
        return f"{self.group} -> {self.role}@{self.organization_id}"
