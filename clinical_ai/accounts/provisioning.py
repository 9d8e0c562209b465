"""Provisioning staff without the admin site: accounts, their roles at each site, their identities at the
hospital's identity provider or an EHR, and which of the identity provider's groups give which role where.

Each change is one transaction with its audit row (``accounts.staff.*``, ``accounts.group_role.*``) and an
explicit actor: the ``manage.py staff_*`` commands pass ``Actor.system("manage.py <command>")`` (with
``--by NAME`` appended when the operator names themselves), the Django admin the signed-in administrator. A
change that would change nothing says so and writes nothing. Refusals raise ``ProvisioningError`` with a
one-line message for the operator, before anything is written.

Nothing here is audited with a password, a name or an e-mail address: rows carry the username, the site's
slug, the role and, for identities, the issuer and the subject (an identifier of the member of staff).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from clinical_ai.accounts.models import ExternalIdentity, GroupRole, Membership, Organization, Role
from clinical_ai.audit.services import Actor, audit_record

MAX_REASON_CHARS = 200


class ProvisioningError(Exception):
    """A change refused (unknown account, site or role; a duplicate; a weak password): one line for the
    operator. Nothing was written."""


@dataclass(frozen=True)
class Change:
    """What a provisioning call did: ``changed`` False when there was nothing to do (and nothing was
    written); ``message`` one line for the operator."""

    changed: bool
    message: str


# --- Looking up what the operator named -------------------------------------------------------------------


def staff_user_get(*, username: str) -> Any:
    """The account named ``username`` (exactly), or ProvisioningError."""
    user_model = get_user_model()
    user = user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).first()
    if user is None:
        raise ProvisioningError(f"there is no account named {username!r}")
    return user


def organization_get(*, slug: str) -> Organization:
    """The site whose slug is ``slug``, or ProvisioningError naming the sites there are."""
    organization = Organization.objects.filter(slug=slug).first()
    if organization is None:
        known = ", ".join(Organization.objects.order_by("slug").values_list("slug", flat=True)) or "none yet"
        raise ProvisioningError(f"there is no site {slug!r} (sites: {known})")
    return organization


def role_parse(*, role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise ProvisioningError(f"there is no role {role!r} (roles: {', '.join(Role.values)})") from None


def _username(user: Any) -> str:
    return str(user.get_username())


def _identity_check(*, issuer: str, subject: str) -> None:
    if not issuer.strip() or not subject.strip():
        raise ProvisioningError("an identity needs both an issuer and a subject")
    if len(issuer) > 255 or len(subject) > 255:
        raise ProvisioningError("an issuer or a subject is longer than 255 characters")


def _identity_holder(*, issuer: str, subject: str) -> Any | None:
    identity = ExternalIdentity.objects.select_related("user").filter(issuer=issuer, subject=subject).first()
    return identity.user if identity is not None else None


# --- Accounts ---------------------------------------------------------------------------------------------


def staff_create(
    *,
    username: str,
    actor: Actor,
    password: str | None,
    full_name: str = "",
    email: str = "",
    identities: Sequence[tuple[str, str]] = (),
    request_id: str = "",
) -> Any:
    """Create a member of staff: with a local password (checked by the password validators), or with
    ``password=None`` a single sign-on account whose password cannot be used. ``identities`` are
    (issuer, subject) pairs linked at once. ``accounts.staff.create``, then ``accounts.staff.link`` for
    each identity, in one transaction. Roles are granted apart (``staff_grant``)."""
    user_model = get_user_model()
    username = username.strip()
    if not username:
        raise ProvisioningError("the username is empty")
    try:
        user_model.username_validator(username)
    except ValidationError as error:
        raise ProvisioningError(
            f"the username {username!r} is not valid: {' '.join(error.messages)}"
        ) from None
    if email:
        try:
            validate_email(email)
        except ValidationError:
            raise ProvisioningError(f"{email!r} is not an e-mail address") from None
    # "Given Family": the last word is the family name; one word alone is taken as the family name.
    given, _, family = " ".join(full_name.split()).rpartition(" ")
    for issuer, subject in identities:
        _identity_check(issuer=issuer, subject=subject)
    with transaction.atomic():
        # Usernames differing only in case would be told apart by the database but not by a person.
        if user_model.objects.filter(**{f"{user_model.USERNAME_FIELD}__iexact": username}).exists():
            raise ProvisioningError(f"an account named {username!r} already exists")
        for issuer, subject in identities:
            holder = _identity_holder(issuer=issuer, subject=subject)
            if holder is not None:
                raise ProvisioningError(f"{subject!r} at {issuer} is already linked to {_username(holder)!r}")
        user = user_model(username=username, email=email, first_name=given[:150], last_name=family[:150])
        if password is None:
            user.set_unusable_password()
        else:
            try:
                validate_password(password, user)
            except ValidationError as error:
                raise ProvisioningError(f"the password is refused: {' '.join(error.messages)}") from None
            user.set_password(password)
        user.save()
        audit_record(
            actor=actor,
            action="accounts.staff.create",
            object_type="User",
            object_id=str(user.pk),
            request_id=request_id,
            detail={
                "username": username,
                "sign_in": "local password" if password is not None else "single sign-on",
                "identities": len(identities),
            },
        )
        for issuer, subject in identities:
            _link(user=user, issuer=issuer, subject=subject, actor=actor, request_id=request_id)
    return user


def _sessions_end(*, user: Any) -> int:
    """Delete ``user``'s sessions from the session store; how many there were. Only stores kept in the
    database can be listed; with a cache-only or cookie store nothing is deleted here, and Django still
    refuses a disabled account at its next request (ModelBackend signs inactive users out)."""
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    if not hasattr(store_class, "get_model_class"):
        return 0
    model = store_class.get_model_class()
    user_id = str(user.pk)
    ended = 0
    for row in model.objects.filter(expire_date__gt=timezone.now()).iterator():
        if str(store_class().decode(row.session_data).get(SESSION_KEY, "")) == user_id:
            store_class(session_key=row.session_key).delete()  # through the store: a cache copy goes too
            ended += 1
    return ended


def staff_disable(*, user: Any, actor: Actor, reason: str = "", request_id: str = "") -> Change:
    """Disable an account and end its sessions: ``accounts.staff.disable`` with the reason given and how
    many sessions were ended. Its roles and identities are kept, for ``staff_enable``."""
    name = _username(user)
    with transaction.atomic():
        user = get_user_model().objects.select_for_update().get(pk=user.pk)
        if not user.is_active:
            return Change(False, f"{name} is already disabled: nothing changed")
        user.is_active = False
        user.save(update_fields=["is_active"])
        ended = _sessions_end(user=user)
        audit_record(
            actor=actor,
            action="accounts.staff.disable",
            object_type="User",
            object_id=str(user.pk),
            request_id=request_id,
            detail={"username": name, "reason": reason.strip()[:MAX_REASON_CHARS], "sessions_ended": ended},
        )
    return Change(True, f"{name} is disabled; {ended} session{'s' if ended != 1 else ''} ended")


def staff_enable(*, user: Any, actor: Actor, request_id: str = "") -> Change:
    name = _username(user)
    with transaction.atomic():
        user = get_user_model().objects.select_for_update().get(pk=user.pk)
        if user.is_active:
            return Change(False, f"{name} is already enabled: nothing changed")
        user.is_active = True
        user.save(update_fields=["is_active"])
        audit_record(
            actor=actor,
            action="accounts.staff.enable",
            object_type="User",
            object_id=str(user.pk),
            request_id=request_id,
            detail={"username": name},
        )
    return Change(True, f"{name} is enabled")


# --- Roles at sites ---------------------------------------------------------------------------------------


def staff_grant(
    *, user: Any, organization: Organization, role: Role, actor: Actor, request_id: str = ""
) -> tuple[Change, Membership]:
    """Give ``user`` ``role`` at ``organization``, as a role granted here (``source`` granted), which the
    identity provider's group sync leaves alone. A role the identity provider gave becomes a granted one
    (kept when the group goes). ``accounts.staff.grant``."""
    name, where = _username(user), organization.slug
    with transaction.atomic():
        membership, created = Membership.objects.select_for_update().get_or_create(
            user=user, organization=organization, role=role, defaults={"source": Membership.Source.GRANTED}
        )
        if not created and membership.source == Membership.Source.GRANTED:
            return Change(False, f"{name} is already {role.value} at {where}: nothing changed"), membership
        was = "" if created else str(membership.source)
        if not created:
            membership.source = Membership.Source.GRANTED
            membership.save(update_fields=["source"])
        audit_record(
            actor=actor,
            action="accounts.staff.grant",
            object_type="User",
            object_id=str(user.pk),
            organization=where,
            request_id=request_id,
            detail={"username": name, "site": where, "role": role.value, "source": "granted", "was": was},
        )
    kept = " (was from the identity provider's groups; now kept when the group goes)" if was else ""
    return Change(True, f"{name} is now {role.value} at {where}{kept}"), membership


def staff_revoke(
    *, user: Any, organization: Organization, role: Role, actor: Actor, request_id: str = ""
) -> Change:
    """Take ``role`` at ``organization`` from ``user``, wherever it came from. ``accounts.staff.revoke``.
    A role from the identity provider's groups comes back at the person's next sign-in or re-check while
    they are in the group: the message says so (change the group at the identity provider instead)."""
    name, where = _username(user), organization.slug
    with transaction.atomic():
        membership = (
            Membership.objects.select_for_update()
            .filter(user=user, organization=organization, role=role)
            .first()
        )
        if membership is None:
            return Change(False, f"{name} is not {role.value} at {where}: nothing changed")
        source = str(membership.source)
        membership.delete()
        audit_record(
            actor=actor,
            action="accounts.staff.revoke",
            object_type="User",
            object_id=str(user.pk),
            organization=where,
            request_id=request_id,
            detail={"username": name, "site": where, "role": role.value, "source": source},
        )
    note = ""
    if source == Membership.Source.IDENTITY_PROVIDER:
        note = " (from the identity provider's groups: it comes back at the next sign-in unless they leave the group)"
    return Change(True, f"{name} is no longer {role.value} at {where}{note}")


# --- Identities at identity providers and EHRs ------------------------------------------------------------


def _link(*, user: Any, issuer: str, subject: str, actor: Actor, request_id: str) -> ExternalIdentity:
    identity = ExternalIdentity.objects.create(user=user, issuer=issuer, subject=subject)
    audit_record(
        actor=actor,
        action="accounts.staff.link",
        object_type="User",
        object_id=str(user.pk),
        request_id=request_id,
        detail={"username": _username(user), "issuer": issuer, "subject": subject},
    )
    return identity


def staff_link(
    *, user: Any, issuer: str, subject: str, actor: Actor, request_id: str = ""
) -> tuple[Change, ExternalIdentity]:
    """Say that ``subject`` at ``issuer`` is ``user``: the hospital identity provider's ``sub``, or an
    EHR's ``fhirUser`` such as ``Practitioner/123`` (the SMART launch finds the account through it).
    ``accounts.staff.link``. A pair linked to someone else is refused: unlink it first."""
    name = _username(user)
    _identity_check(issuer=issuer, subject=subject)
    with transaction.atomic():
        existing = (
            ExternalIdentity.objects.select_for_update()
            .select_related("user")
            .filter(issuer=issuer, subject=subject)
            .first()
        )
        if existing is not None:
            if existing.user_id == user.pk:
                return Change(False, f"{subject!r} at {issuer} is already {name}: nothing changed"), existing
            raise ProvisioningError(
                f"{subject!r} at {issuer} is linked to {_username(existing.user)!r}: unlink it there first"
            )
        identity = _link(user=user, issuer=issuer, subject=subject, actor=actor, request_id=request_id)
    return Change(True, f"{subject!r} at {issuer} is now {name}"), identity


def staff_unlink(*, user: Any, issuer: str, subject: str, actor: Actor, request_id: str = "") -> Change:
    """Remove the link of ``subject`` at ``issuer`` to ``user``: signing in through that issuer as that
    subject no longer finds the account. ``accounts.staff.unlink``."""
    name = _username(user)
    with transaction.atomic():
        identity = (
            ExternalIdentity.objects.select_for_update()
            .filter(user=user, issuer=issuer, subject=subject)
            .first()
        )
        if identity is None:
            return Change(False, f"{subject!r} at {issuer} is not linked to {name}: nothing changed")
        identity.delete()
        audit_record(
            actor=actor,
            action="accounts.staff.unlink",
            object_type="User",
            object_id=str(user.pk),
            request_id=request_id,
            detail={"username": name, "issuer": issuer, "subject": subject},
        )
    return Change(True, f"{subject!r} at {issuer} is no longer linked to {name}")


# --- Identity provider groups -----------------------------------------------------------------------------


def group_role_add(
    *, group: str, organization: Organization, role: Role, actor: Actor, request_id: str = ""
) -> tuple[Change, GroupRole]:
    """Members of the identity provider's ``group`` get ``role`` at ``organization`` at their next sign-in
    or re-check. ``accounts.group_role.add``."""
    group = group.strip()
    if not group or len(group) > 255:
        raise ProvisioningError("a group name must be 1 to 255 characters")
    where = organization.slug
    with transaction.atomic():
        mapping, created = GroupRole.objects.select_for_update().get_or_create(
            group=group, organization=organization, role=role
        )
        if not created:
            return Change(
                False, f"group {group!r} already gives {role.value} at {where}: nothing changed"
            ), mapping
        audit_record(
            actor=actor,
            action="accounts.group_role.add",
            object_type="GroupRole",
            object_id=str(mapping.pk),
            organization=where,
            request_id=request_id,
            detail={"group": group, "site": where, "role": role.value},
        )
    return Change(True, f"group {group!r} now gives {role.value} at {where}"), mapping


def group_role_remove(
    *, group: str, organization: Organization, role: Role, actor: Actor, request_id: str = ""
) -> Change:
    """Stop ``group`` giving ``role`` at ``organization``: its members lose the role (the one the group
    gave) at their next sign-in or re-check. ``accounts.group_role.remove``."""
    where = organization.slug
    with transaction.atomic():
        mapping = (
            GroupRole.objects.select_for_update()
            .filter(group=group, organization=organization, role=role)
            .first()
        )
        if mapping is None:
            return Change(False, f"group {group!r} does not give {role.value} at {where}: nothing changed")
        mapping_id = mapping.pk
        mapping.delete()
        audit_record(
            actor=actor,
            action="accounts.group_role.remove",
            object_type="GroupRole",
            object_id=str(mapping_id),
            organization=where,
            request_id=request_id,
            detail={"group": group, "site": where, "role": role.value},
        )
    return Change(True, f"group {group!r} no longer gives {role.value} at {where}")
