"""Provisioning staff: the services, the ``manage.py staff_*`` commands (through call_command) and the Django
admin's pages, each change audited, nothing written for no-ops or refusals."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from clinical_ai.accounts import provisioning
from clinical_ai.accounts.models import ExternalIdentity, GroupRole, Membership, Role
from clinical_ai.accounts.provisioning import ProvisioningError
from clinical_ai.accounts.roster import staff_roster
from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.selectors import audit_chain_verify
from clinical_ai.audit.services import Actor
from tests.unit.audit.personas import PASSWORD

pytestmark = pytest.mark.django_db

IDP = "https://login.hospital.example/realms/staff"
EHR = "https://ehr.hospital.example/fhir"
STRONG = "a long ward password 4 tests"


def _run(*args: str, **kwargs: Any) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err, **kwargs)
    return out.getvalue(), err.getvalue()


def _new_rows(before: int) -> list[AuditEvent]:
    return list(AuditEvent.objects.order_by("seq")[before:])


def _count() -> int:
    return AuditEvent.objects.count()


# --- create -----------------------------------------------------------------------------------------------


def test_create_a_single_sign_on_account_with_identities(db: None) -> None:
    before = _count()
    out, _ = _run(
        "staff_create",
        "nurse-njoki",
        "--name",
        "Njoki Mwangi",
        "--email",
        "njoki@hospital.example",
        "--no-password",
        "--identity",
        IDP,
        "f3a1",
        "--identity",
        EHR,
        "Practitioner/123",
    )
    assert "created nurse-njoki (single sign-on)" in out
    user = get_user_model().objects.get(username="nurse-njoki")
    assert not user.has_usable_password()
    assert (user.first_name, user.last_name, user.email) == ("Njoki", "Mwangi", "njoki@hospital.example")
    assert set(ExternalIdentity.objects.filter(user=user).values_list("issuer", "subject")) == {
        (IDP, "f3a1"),
        (EHR, "Practitioner/123"),
    }
    rows = _new_rows(before)
    assert [row.action for row in rows] == [
        "accounts.staff.create",
        "accounts.staff.link",
        "accounts.staff.link",
    ]
    assert all((r.actor_type, r.actor_id) == ("system", "manage.py staff_create") for r in rows)
    assert rows[0].detail == {"username": "nurse-njoki", "sign_in": "single sign-on", "identities": 2}
    assert "njoki@" not in json.dumps([r.detail for r in rows])  # no e-mail address, no name
    assert audit_chain_verify().ok


def test_create_a_local_account_reads_the_password_from_stdin_or_a_prompt(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run("staff_create", "break-glass", "--password-stdin", stdin=io.StringIO(STRONG + "\n"))
    assert get_user_model().objects.get(username="break-glass").check_password(STRONG)
    typed = iter([STRONG, STRONG])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(typed))
    out, _ = _run("staff_create", "demo-admin", "--password-prompt")
    assert "created demo-admin (local password)" in out
    assert get_user_model().objects.get(username="demo-admin").check_password(STRONG)
    # The password never appears in the audit rows.
    assert STRONG not in json.dumps(list(AuditEvent.objects.values_list("detail", flat=True)))


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("dr-ward", "--no-password"), "", "an account named 'dr-ward' already exists"),
        (("DR-WARD", "--no-password"), "", "an account named 'DR-WARD' already exists"),
        (("new-one", "--password-stdin"), "short\n", "the password is refused"),
        (("new-one", "--password-stdin"), "\n", "the password is empty"),
        (("bad name!", "--no-password"), "", "the username 'bad name!' is not valid"),
        (("new-one", "--no-password", "--email", "not-an-address"), "", "is not an e-mail address"),
        (("new-one", "--no-password", "--identity", IDP, "taken"), "", "is already linked to 'dr-ward'"),
        (("new-one", "--no-password", "--by", "nobody"), "", "there is no account named 'nobody'"),
    ],
)
def test_create_refusals_are_one_line_and_write_nothing(
    clinician: Any, args: tuple[str, ...], stdin: str, message: str
) -> None:
    ExternalIdentity.objects.create(user=clinician, issuer=IDP, subject="taken")
    users, before = get_user_model().objects.count(), _count()
    with pytest.raises(CommandError, match=message) as refused:
        _run("staff_create", *args, stdin=io.StringIO(stdin))
    assert "\n" not in str(refused.value)
    assert get_user_model().objects.count() == users and _count() == before


def test_create_needs_a_password_choice(db: None) -> None:
    with pytest.raises(CommandError):
        _run("staff_create", "someone")


def test_create_prompt_mismatch(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    typed = iter([STRONG, STRONG + "x"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(typed))
    with pytest.raises(CommandError, match="not the same"):
        _run("staff_create", "someone", "--password-prompt")
    assert not get_user_model().objects.filter(username="someone").exists()


# --- disable / enable -------------------------------------------------------------------------------------


def test_disable_ends_the_users_sessions_only(client: Client, clinician: Any, auditor: Any) -> None:
    assert client.post("/accounts/login/", {"username": "dr-ward", "password": PASSWORD}).status_code == 302
    assert client.get("/review/").status_code == 200
    other = Client()
    other.post("/accounts/login/", {"username": "auditor-ann", "password": PASSWORD})
    before = _count()
    out, _ = _run("staff_disable", "dr-ward", "--reason", "left the ward", "--by", "auditor-ann")
    assert "dr-ward is disabled; 1 session ended" in out
    [row] = _new_rows(before)
    assert row.action == "accounts.staff.disable"
    assert (row.actor_type, row.actor_id) == ("system", "manage.py staff_disable --by auditor-ann")
    assert row.detail == {"username": "dr-ward", "reason": "left the ward", "sessions_ended": 1}
    remaining = [s.get_decoded().get(SESSION_KEY) for s in Session.objects.all()]
    assert str(clinician.pk) not in remaining and str(auditor.pk) in remaining
    # The browser of the disabled user is signed out: the queue sends it to sign in.
    response = client.get("/review/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    # Again: nothing to do, nothing written.
    out, _ = _run("staff_disable", "dr-ward")
    assert "already disabled: nothing changed" in out and _count() == before + 1
    out, _ = _run("staff_enable", "dr-ward")
    assert "dr-ward is enabled" in out
    assert _new_rows(before + 1)[0].action == "accounts.staff.enable"
    out, _ = _run("staff_enable", "dr-ward")
    assert "already enabled: nothing changed" in out and _count() == before + 2
    # Roles were kept.
    assert Membership.objects.filter(user=clinician, role=Role.CLINICIAN).exists()


def test_disable_unknown_user(db: None) -> None:
    with pytest.raises(CommandError, match="there is no account named 'ghost'"):
        _run("staff_disable", "ghost")


# --- grant / revoke ---------------------------------------------------------------------------------------


def test_grant_and_revoke(clinician: Any, organization: Any, other_organization: Any) -> None:
    before = _count()
    out, _ = _run("staff_grant", "dr-ward", "--site", "county-hospital", "--role", "auditor")
    assert "dr-ward is now auditor at county-hospital" in out
    membership = Membership.objects.get(user=clinician, organization=other_organization, role=Role.AUDITOR)
    assert membership.source == Membership.Source.GRANTED
    [row] = _new_rows(before)
    assert (row.action, row.organization, row.object_id) == (
        "accounts.staff.grant",
        "county-hospital",
        str(clinician.pk),
    )
    assert row.detail == {
        "username": "dr-ward",
        "site": "county-hospital",
        "role": "auditor",
        "source": "granted",
        "was": "",
    }
    out, _ = _run("staff_grant", "dr-ward", "--site", "county-hospital", "--role", "auditor")
    assert "nothing changed" in out and _count() == before + 1
    out, _ = _run("staff_revoke", "dr-ward", "--site", "county-hospital", "--role", "auditor")
    assert "no longer auditor at county-hospital" in out
    assert _new_rows(before + 1)[0].action == "accounts.staff.revoke"
    out, _ = _run("staff_revoke", "dr-ward", "--site", "county-hospital", "--role", "auditor")
    assert "nothing changed" in out and _count() == before + 2


def test_granting_a_role_the_identity_provider_gave_keeps_it(clinician: Any, other_organization: Any) -> None:
    Membership.objects.create(
        user=clinician,
        organization=other_organization,
        role=Role.CLINICIAN,
        source=Membership.Source.IDENTITY_PROVIDER,
    )
    change, membership = provisioning.staff_grant(
        user=clinician, organization=other_organization, role=Role.CLINICIAN, actor=Actor.system("test")
    )
    assert change.changed and "now kept when the group goes" in change.message
    assert membership.source == Membership.Source.GRANTED
    assert AuditEvent.objects.get(action="accounts.staff.grant").detail["was"] == "idp"


def test_revoking_a_role_from_the_identity_provider_warns(clinician: Any, other_organization: Any) -> None:
    Membership.objects.create(
        user=clinician,
        organization=other_organization,
        role=Role.AUDITOR,
        source=Membership.Source.IDENTITY_PROVIDER,
    )
    out, _ = _run("staff_revoke", "dr-ward", "--site", "county-hospital", "--role", "auditor")
    assert "comes back at the next sign-in unless they leave the group" in out
    assert AuditEvent.objects.get(action="accounts.staff.revoke").detail["source"] == "idp"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ghost", "--site", "st-elsewhere", "--role", "clinician"), "there is no account named 'ghost'"),
        (
            ("dr-ward", "--site", "nowhere", "--role", "clinician"),
            r"there is no site 'nowhere' \(sites: county-hospital, st-elsewhere\)",
        ),
        (("dr-ward", "--site", "st-elsewhere", "--role", "surgeon"), "invalid choice: 'surgeon'"),
    ],
)
def test_grant_refusals(clinician: Any, other_organization: Any, args: tuple[str, ...], message: str) -> None:
    before = _count()
    with pytest.raises(CommandError, match=message):
        _run("staff_grant", *args)
    assert _count() == before


def test_role_parse_refuses_unknown_roles() -> None:
    with pytest.raises(
        ProvisioningError, match="there is no role 'surgeon' \\(roles: clinician, auditor, admin\\)"
    ):
        provisioning.role_parse(role="surgeon")


# --- link / unlink ----------------------------------------------------------------------------------------


def test_link_and_unlink(clinician: Any, auditor: Any) -> None:
    before = _count()
    out, _ = _run("staff_link", "dr-ward", "--issuer", EHR, "--subject", "Practitioner/123")
    assert "'Practitioner/123' at https://ehr.hospital.example/fhir is now dr-ward" in out
    [row] = _new_rows(before)
    assert row.detail == {"username": "dr-ward", "issuer": EHR, "subject": "Practitioner/123"}
    out, _ = _run("staff_link", "dr-ward", "--issuer", EHR, "--subject", "Practitioner/123")
    assert "nothing changed" in out and _count() == before + 1
    with pytest.raises(CommandError, match="is linked to 'dr-ward': unlink it there first"):
        _run("staff_link", "auditor-ann", "--issuer", EHR, "--subject", "Practitioner/123")
    with pytest.raises(CommandError, match="needs both an issuer and a subject"):
        _run("staff_link", "auditor-ann", "--issuer", EHR, "--subject", " ")
    out, _ = _run("staff_link", "dr-ward", "--issuer", EHR, "--subject", "Practitioner/123", "--remove")
    assert "no longer linked to dr-ward" in out
    assert not ExternalIdentity.objects.exists()
    assert [r.action for r in _new_rows(before)] == ["accounts.staff.link", "accounts.staff.unlink"]
    out, _ = _run("staff_link", "dr-ward", "--issuer", EHR, "--subject", "Practitioner/123", "--remove")
    assert "nothing changed" in out and _count() == before + 2


# --- group roles ------------------------------------------------------------------------------------------


def test_group_roles(organization: Any, other_organization: Any) -> None:
    before = _count()
    out, _ = _run("staff_group_role", "add", "ward-7-nurses", "--site", "st-elsewhere", "--role", "clinician")
    assert "group 'ward-7-nurses' now gives clinician at st-elsewhere" in out
    _run("staff_group_role", "add", "audit-team", "--site", "county-hospital", "--role", "auditor")
    out, _ = _run("staff_group_role", "add", "ward-7-nurses", "--site", "st-elsewhere", "--role", "clinician")
    assert "nothing changed" in out
    rows = _new_rows(before)
    assert [r.action for r in rows] == ["accounts.group_role.add", "accounts.group_role.add"]
    assert rows[0].detail == {"group": "ward-7-nurses", "site": "st-elsewhere", "role": "clinician"}
    out, _ = _run("staff_group_role", "list")
    assert out.splitlines() == [
        "audit-team\tauditor\tcounty-hospital",
        "ward-7-nurses\tclinician\tst-elsewhere",
    ]
    out, _ = _run("staff_group_role", "list", "--site", "county-hospital", "--json")
    assert json.loads(out) == [{"group": "audit-team", "site": "county-hospital", "role": "auditor"}]
    out, _ = _run(
        "staff_group_role", "remove", "ward-7-nurses", "--site", "st-elsewhere", "--role", "clinician"
    )
    assert "no longer gives clinician" in out
    assert _new_rows(before + 2)[0].action == "accounts.group_role.remove"
    assert list(GroupRole.objects.values_list("group", flat=True)) == ["audit-team"]
    with pytest.raises(CommandError, match="add needs a GROUP, --site and --role"):
        _run("staff_group_role", "add", "x", "--site", "st-elsewhere")


# --- list -------------------------------------------------------------------------------------------------


def test_list_and_who_can_sign_where(
    clinician: Any, other_site_clinician: Any, auditor: Any, admin: Any, organization: Any, settings: Any
) -> None:
    settings.OIDC_ISSUER, settings.OIDC_CLIENT_ID = IDP, "clinical-ai"
    # A single sign-on clinician who signs with the hospital login; one linked only to the EHR, who
    # cannot sign; and a disabled clinician.
    sso = provisioning.staff_create(
        username="nurse-sso", password=None, identities=[(IDP, "s-1")], actor=Actor.system("test")
    )
    ehr_only = provisioning.staff_create(
        username="ehr-only", password=None, identities=[(EHR, "Practitioner/9")], actor=Actor.system("test")
    )
    gone = provisioning.staff_create(username="gone", password=STRONG, actor=Actor.system("test"))
    for user in (sso, ehr_only, gone):
        provisioning.staff_grant(
            user=user, organization=organization, role=Role.CLINICIAN, actor=Actor.system("t")
        )
    provisioning.staff_disable(user=gone, actor=Actor.system("test"))
    out, _ = _run("staff_list")
    lines = out.splitlines()
    assert lines[0].split() == ["username", "name", "enabled", "signs", "in", "with", "roles"]
    by_name = {line.split()[0]: line for line in lines[1:]}
    assert set(by_name) == {
        "admin-abe",
        "auditor-ann",
        "dr-county",
        "dr-ward",
        "ehr-only",
        "gone",
        "nurse-sso",
    }
    assert (
        "single sign-on" in by_name["nurse-sso"]
        and "clinician at st-elsewhere (granted)" in by_name["nurse-sso"]
    )
    assert "no (disabled)" in by_name["gone"]
    assert "local password" in by_name["dr-ward"]
    out, err = _run("staff_list", "--can-sign")
    rows = [line.split() for line in out.splitlines()[1:]]
    assert rows == [
        ["county-hospital", "dr-county", "-", "password"],
        ["st-elsewhere", "dr-ward", "-", "password"],
        ["st-elsewhere", "nurse-sso", "-", "hospital", "login"],
    ]
    assert "1 clinician(s) cannot sign: no password and no hospital login: ehr-only" in err
    out, _ = _run("staff_list", "--site", "county-hospital", "--can-sign")
    assert [line.split()[1] for line in out.splitlines()[1:]] == ["dr-county"]
    listed = json.loads(_run("staff_list", "--role", "auditor", "--json")[0])
    assert [entry["username"] for entry in listed] == ["auditor-ann"]
    assert listed[0]["roles"] == [
        {"site": "st-elsewhere", "site_name": "St Elsewhere General", "role": "auditor", "source": "granted"}
    ]
    with pytest.raises(CommandError, match="there is no site 'nowhere'"):
        _run("staff_list", "--site", "nowhere")


def test_roster_without_single_sign_on_counts_nobody_as_signing_with_it(db: None) -> None:
    user = provisioning.staff_create(
        username="sso-only", password=None, identities=[(IDP, "s-2")], actor=Actor.system("test")
    )
    [entry] = staff_roster()
    assert (entry.user_id, entry.sign_in, entry.signs_with) == (user.pk, "single sign-on", "")


# --- the Django admin -------------------------------------------------------------------------------------


def _admin_client(superuser: Any) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def test_admin_changes_go_through_the_services(
    superuser: Any, clinician: Any, organization: Any, other_organization: Any
) -> None:
    client = _admin_client(superuser)
    before = _count()
    response = client.post(
        "/admin/accounts/membership/add/",
        {"user": clinician.pk, "organization": other_organization.pk, "role": "auditor"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    membership = Membership.objects.get(user=clinician, organization=other_organization)
    response = client.post(
        "/admin/accounts/grouprole/add/",
        {"group": "icu", "organization": organization.pk, "role": "clinician"},
    )
    assert response.status_code == 302
    response = client.post(
        "/admin/accounts/externalidentity/add/",
        {"user": clinician.pk, "issuer": EHR, "subject": "Practitioner/5"},
    )
    assert response.status_code == 302
    identity = ExternalIdentity.objects.get()
    assert (
        client.post(f"/admin/accounts/membership/{membership.pk}/delete/", {"post": "yes"}).status_code == 302
    )
    mapping = GroupRole.objects.get()
    response = client.post(
        "/admin/accounts/grouprole/",
        {"action": "delete_selected", "_selected_action": [mapping.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert (
        client.post(f"/admin/accounts/externalidentity/{identity.pk}/delete/", {"post": "yes"}).status_code
        == 302
    )
    rows = _new_rows(before)
    assert [r.action for r in rows] == [
        "accounts.staff.grant",
        "accounts.group_role.add",
        "accounts.staff.link",
        "accounts.staff.revoke",
        "accounts.group_role.remove",
        "accounts.staff.unlink",
    ]
    assert all((r.actor_type, r.actor_id) == ("user", str(superuser.pk)) for r in rows)
    assert not GroupRole.objects.exists() and not ExternalIdentity.objects.exists()
    # Rows are added and deleted, never edited in place.
    assert (
        client.get(f"/admin/accounts/membership/{clinician.memberships.get().pk}/change/").status_code == 200
    )
    assert (
        client.post(
            f"/admin/accounts/membership/{clinician.memberships.get().pk}/change/",
            {"user": clinician.pk, "organization": other_organization.pk, "role": "admin"},
        ).status_code
        == 403
    )


def test_admin_user_create_disable_enable_are_audited(superuser: Any, clinician: Any) -> None:
    client = _admin_client(superuser)
    before = _count()
    response = client.post(
        "/admin/auth/user/add/",
        {"username": "new-nurse", "usable_password": "false", "password1": "", "password2": ""},
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    created = get_user_model().objects.get(username="new-nurse")
    assert not created.has_usable_password()
    response = client.post(
        "/admin/auth/user/",
        {"action": "disable_staff", "_selected_action": [clinician.pk, created.pk]},
    )
    assert response.status_code == 302
    response = client.post(
        "/admin/auth/user/", {"action": "enable_staff", "_selected_action": [clinician.pk]}
    )
    assert response.status_code == 302
    rows = _new_rows(before)
    assert [r.action for r in rows] == [
        "accounts.staff.create",
        "accounts.staff.disable",
        "accounts.staff.disable",
        "accounts.staff.enable",
    ]
    assert all(r.actor_id == str(superuser.pk) for r in rows)
    created.refresh_from_db()
    clinician.refresh_from_db()
    assert (created.is_active, clinician.is_active) == (False, True)


def test_admin_user_form_unticking_active_disables_through_the_service(
    superuser: Any, clinician: Any
) -> None:
    client = _admin_client(superuser)
    before = _count()
    form = {
        "username": "dr-ward",
        "first_name": "Ward",
        "last_name": "",
        "email": "",
        "date_joined_0": "2025-01-01",
        "date_joined_1": "08:00:00",
    }  # is_active left out: unticked
    response = client.post(f"/admin/auth/user/{clinician.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    clinician.refresh_from_db()
    assert (clinician.is_active, clinician.first_name) == (False, "Ward")
    [row] = _new_rows(before)
    assert (row.action, row.actor_id, row.detail["reason"]) == (
        "accounts.staff.disable",
        str(superuser.pk),
        "Django admin",
    )
