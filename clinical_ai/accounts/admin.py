from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from clinical_ai.accounts.lockout import lockout_clear
from clinical_ai.accounts.models import (
    ExternalIdentity,
    GroupRole,
    LoginThrottle,
    Membership,
    Organization,
    Role,
)
from clinical_ai.accounts.provisioning import (
    group_role_add,
    group_role_remove,
    staff_create,
    staff_disable,
    staff_enable,
    staff_grant,
    staff_link,
    staff_revoke,
    staff_unlink,
)
from clinical_ai.accounts.views import login_view, logout_view
from clinical_ai.audit.services import Actor
from clinical_ai.core.middleware import request_id_of

# The admin site signs people in and out through the same audited views as everyone else, instead of its
# own (which would bypass the audit rows written by clinical_ai.accounts.services).
admin.site.login = login_view  # type: ignore[method-assign]
admin.site.logout = logout_view  # type: ignore[method-assign,assignment]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin[Organization]):
    list_display = ("name", "slug", "time_zone", "external_id")


def _actor(request: HttpRequest) -> Actor:
    return Actor.user(request.user.pk or "")


def _saved_as(obj: Any, saved: Any) -> None:
    """Make the admin's unsaved object the row a service wrote, for the admin's log and redirect."""
    obj.pk = saved.pk
    obj.created_at = saved.created_at
    obj._state.adding = False


class _AddDeleteOnly:
    """Rows that are added and deleted, never edited in place: an edit is a delete and an add, each on
    record. Saving and deleting go through clinical_ai.accounts.provisioning, so each change is audited
    with the administrator as actor (the admin's own LogEntry is no audit record)."""

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Membership)
class MembershipAdmin(_AddDeleteOnly, admin.ModelAdmin[Membership]):
    list_display = ("user", "organization", "role", "source")
    list_filter = ("role", "organization", "source")
    search_fields = ("user__username",)
    fields = ("user", "organization", "role")

    def save_model(self, request: HttpRequest, obj: Membership, form: Any, change: bool) -> None:
        _, saved = staff_grant(
            user=obj.user,
            organization=obj.organization,
            role=Role(obj.role),
            actor=_actor(request),
            request_id=request_id_of(request),
        )
        _saved_as(obj, saved)
        obj.source = saved.source

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        staff_revoke(
            user=obj.user,
            organization=obj.organization,
            role=Role(obj.role),
            actor=_actor(request),
            request_id=request_id_of(request),
        )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        for membership in queryset.select_related("user", "organization"):
            self.delete_model(request, membership)


@admin.register(GroupRole)
class GroupRoleAdmin(_AddDeleteOnly, admin.ModelAdmin[GroupRole]):
    """Which group of the hospital's identity provider gives which role at which site."""

    list_display = ("group", "organization", "role", "created_at")
    list_filter = ("role", "organization")
    search_fields = ("group",)
    fields = ("group", "organization", "role")

    def save_model(self, request: HttpRequest, obj: GroupRole, form: Any, change: bool) -> None:
        _, saved = group_role_add(
            group=obj.group,
            organization=obj.organization,
            role=Role(obj.role),
            actor=_actor(request),
            request_id=request_id_of(request),
        )
        _saved_as(obj, saved)

    def delete_model(self, request: HttpRequest, obj: GroupRole) -> None:
        group_role_remove(
            group=obj.group,
            organization=obj.organization,
            role=Role(obj.role),
            actor=_actor(request),
            request_id=request_id_of(request),
        )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[GroupRole]) -> None:
        for mapping in queryset.select_related("organization"):
            self.delete_model(request, mapping)


@admin.register(ExternalIdentity)
class ExternalIdentityAdmin(_AddDeleteOnly, admin.ModelAdmin[ExternalIdentity]):
    """Who a member of staff is at an identity provider or an EHR (fhirUser)."""

    list_display = ("user", "issuer", "subject", "created_at", "last_login_at")
    list_filter = ("issuer",)
    search_fields = ("user__username", "subject")
    fields = ("user", "issuer", "subject")

    def save_model(self, request: HttpRequest, obj: ExternalIdentity, form: Any, change: bool) -> None:
        _, saved = staff_link(
            user=obj.user,
            issuer=obj.issuer,
            subject=obj.subject,
            actor=_actor(request),
            request_id=request_id_of(request),
        )
        _saved_as(obj, saved)

    def delete_model(self, request: HttpRequest, obj: ExternalIdentity) -> None:
        staff_unlink(
            user=obj.user,
            issuer=obj.issuer,
            subject=obj.subject,
            actor=_actor(request),
            request_id=request_id_of(request),
        )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ExternalIdentity]) -> None:
        for identity in queryset.select_related("user"):
            self.delete_model(request, identity)


@admin.register(LoginThrottle)
class LoginThrottleAdmin(admin.ModelAdmin[LoginThrottle]):
    """Failed-attempt counts and locks: seen here, lifted only by the audited action (no edit, no delete,
    which would leave no record)."""

    list_display = ("scope", "user", "key", "failures", "last_failure_at", "locked_until", "is_locked")
    list_filter = ("scope",)
    search_fields = ("user__username",)
    actions = ["clear_lockouts"]

    @admin.display(boolean=True, description="Locked now")
    def is_locked(self, obj: LoginThrottle) -> bool:
        return obj.locked_until is not None and obj.locked_until > timezone.now()

    @admin.action(description="Lift the selected locks and counts (audited)")
    def clear_lockouts(self, request: HttpRequest, queryset: QuerySet[LoginThrottle]) -> None:
        cleared = lockout_clear(
            throttle_ids=list(queryset.values_list("pk", flat=True)),
            actor=Actor.user(request.user.pk or ""),
            request_id=request_id_of(request),
        )
        self.message_user(request, f"{cleared} lock(s) lifted.")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class StaffUserAdmin(UserAdmin):  # type: ignore[type-arg]
    """Django's user admin, with creating, disabling and enabling an account going through the audited
    provisioning services (``accounts.staff.create`` / ``disable`` / ``enable``), like the commands."""

    actions = ["disable_staff", "enable_staff"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        actor, request_id = _actor(request), request_id_of(request)
        if not change:
            usable = form.cleaned_data.get("set_usable_password", True)
            created = staff_create(
                username=obj.get_username(),
                password=form.cleaned_data.get("password1") if usable else None,
                actor=actor,
                request_id=request_id,
            )
            obj.pk, obj.password = created.pk, created.password
            obj._state.adding = False
            return
        if "is_active" not in form.changed_data:
            super().save_model(request, obj, form, change)
            return
        # The other fields are saved as they are; the switch itself goes through the service.
        wanted = obj.is_active
        obj.is_active = not wanted
        super().save_model(request, obj, form, change)
        if wanted:
            staff_enable(user=obj, actor=actor, request_id=request_id)
        else:
            staff_disable(user=obj, actor=actor, reason="Django admin", request_id=request_id)
        obj.refresh_from_db(fields=["is_active"])

    @admin.action(description="Disable the selected accounts and end their sessions (audited)")
    def disable_staff(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for user in queryset:
            change = staff_disable(
                user=user, actor=_actor(request), reason="Django admin", request_id=request_id_of(request)
            )
            self.message_user(request, change.message)

    @admin.action(description="Enable the selected accounts (audited)")
    def enable_staff(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for user in queryset:
            self.message_user(
                request,
                staff_enable(user=user, actor=_actor(request), request_id=request_id_of(request)).message,
            )


if admin.site.is_registered(get_user_model()):
    admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), StaffUserAdmin)
