from django.contrib import admin

from clinical_ai.accounts.models import Membership, Organization
from clinical_ai.accounts.views import login_view, logout_view

# The admin site signs people in and out through the same audited views as everyone else, instead of its
# own (which would bypass the audit rows written by clinical_ai.accounts.services).
admin.site.login = login_view  # type: ignore[method-assign]
admin.site.logout = logout_view  # type: ignore[method-assign,assignment]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin[Organization]):
    list_display = ("name", "slug", "external_id")


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin[Membership]):
    list_display = ("user", "organization", "role")
    list_filter = ("role", "organization")
