"""Who the staff are, how they sign in, what roles they hold where, and who can sign decisions where. Reads
only (``manage.py staff_list``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model

from clinical_ai.accounts.models import ExternalIdentity, GroupRole, Membership, Organization, Role

SIGN_IN_LOCAL = "local password"
SIGN_IN_SSO = "single sign-on"
SIGN_IN_BOTH = "both"
SIGN_IN_NONE = "none"
SIGNS_WITH_PASSWORD = "password"  # noqa: S105 (a label, not a secret)
SIGNS_WITH_IDP = "hospital login"


@dataclass(frozen=True)
class RosterRole:
    site: str  # the site's slug
    site_name: str
    role: str
    source: str  # Membership.Source: "granted" or "idp"


@dataclass(frozen=True)
class RosterEntry:
    user_id: int
    username: str
    name: str
    active: bool
    sign_in: str  # SIGN_IN_*: how the account can sign in
    # How the person re-authenticates to sign a decision (as clinical_ai.review's step-up does): at the
    # hospital's identity provider when they have an identity there and no usable password, otherwise
    # with their password; "" when neither works.
    signs_with: str
    roles: tuple[RosterRole, ...]
    identities: tuple[tuple[str, str], ...]  # (issuer, subject)

    def as_dict(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "name": self.name,
            "active": self.active,
            "sign_in": self.sign_in,
            "signs_with": self.signs_with,
            "roles": [
                {"site": r.site, "site_name": r.site_name, "role": r.role, "source": r.source}
                for r in self.roles
            ],
            "identities": [{"issuer": issuer, "subject": subject} for issuer, subject in self.identities],
        }


def _sign_in(*, usable_password: bool, identities: int) -> str:
    if usable_password and identities:
        return SIGN_IN_BOTH
    if usable_password:
        return SIGN_IN_LOCAL
    return SIGN_IN_SSO if identities else SIGN_IN_NONE


def _signs_with(*, usable_password: bool, issuers: set[str], staff_issuer: str) -> str:
    if not usable_password and staff_issuer and staff_issuer in issuers:
        return SIGNS_WITH_IDP
    return SIGNS_WITH_PASSWORD if usable_password else ""


def staff_roster(
    *,
    organization: Organization | None = None,
    role: Role | None = None,
    can_sign: bool = False,
    staff_issuer: str = "",
) -> list[RosterEntry]:
    """The staff, by username, with the roles that match the filters: at ``organization`` only, of ``role``
    only. Without a filter every account is listed, those without a role too. ``can_sign`` keeps the
    people who can sign decisions: active accounts with the clinician role (at the site, when given)
    that have a way to re-authenticate (``signs_with``). ``staff_issuer`` is the hospital identity
    provider's issuer ("" while single sign-on is off)."""
    if can_sign:
        role = Role.CLINICIAN
    memberships = Membership.objects.select_related("organization").order_by("organization__slug", "role")
    if organization is not None:
        memberships = memberships.filter(organization=organization)
    if role is not None:
        memberships = memberships.filter(role=role)
    roles_of: dict[int, list[RosterRole]] = {}
    for membership in memberships:
        roles_of.setdefault(membership.user_id, []).append(
            RosterRole(
                site=membership.organization.slug,
                site_name=membership.organization.name,
                role=str(membership.role),
                source=str(membership.source),
            )
        )
    users = get_user_model().objects.order_by("username")
    if organization is not None or role is not None:
        users = users.filter(pk__in=list(roles_of))
    if can_sign:
        users = users.filter(is_active=True)
    identities_of: dict[int, list[tuple[str, str]]] = {}
    for user_id, issuer, subject in ExternalIdentity.objects.order_by("issuer", "subject").values_list(
        "user_id", "issuer", "subject"
    ):
        identities_of.setdefault(user_id, []).append((issuer, subject))
    entries = []
    for user in users:
        identities = identities_of.get(user.pk, [])
        usable = user.has_usable_password()
        entry = RosterEntry(
            user_id=user.pk,
            username=user.get_username(),
            name=user.get_full_name(),
            active=user.is_active,
            sign_in=_sign_in(usable_password=usable, identities=len(identities)),
            signs_with=_signs_with(
                usable_password=usable,
                issuers={issuer for issuer, _ in identities},
                staff_issuer=staff_issuer,
            ),
            roles=tuple(roles_of.get(user.pk, ())),
            identities=tuple(identities),
        )
        if can_sign and not entry.signs_with:
            continue
        entries.append(entry)
    return entries


def clinicians_unable_to_sign(
    *, organization: Organization | None = None, staff_issuer: str = ""
) -> list[RosterEntry]:
    """Active clinicians (at ``organization``, when given) with no way to re-authenticate for a signature:
    no usable password and no identity at the hospital's identity provider."""
    everyone = staff_roster(organization=organization, role=Role.CLINICIAN, staff_issuer=staff_issuer)
    return [entry for entry in everyone if entry.active and not entry.signs_with]


@dataclass(frozen=True)
class GroupRoleEntry:
    group: str
    site: str
    role: str


def group_roles(*, organization: Organization | None = None, group: str = "") -> list[GroupRoleEntry]:
    """Which identity provider group gives which role where, by group, site and role."""
    mappings = GroupRole.objects.select_related("organization").order_by(
        "group", "organization__slug", "role"
    )
    if organization is not None:
        mappings = mappings.filter(organization=organization)
    if group:
        mappings = mappings.filter(group=group)
    return [GroupRoleEntry(group=m.group, site=m.organization.slug, role=str(m.role)) for m in mappings]
