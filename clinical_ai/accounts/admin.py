from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from clinical_ai.accounts.lockout import lockout_clear
from clinical_ai.accounts.models import LoginThrottle, Membership, Organization
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


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin[Membership]):
    list_display = ("user", "organization", "role")
    list_filter = ("role", "organization")


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
