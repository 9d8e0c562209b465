from django.contrib import admin
from django.urls import include, path

from clinical_ai.core import views as core_views

urlpatterns = [
    path("", core_views.home, name="home"),
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("clinical_ai.accounts.urls")),
    path("audit/", include("clinical_ai.audit.urls")),
    path("review/", include("clinical_ai.review.urls")),
    path("models/", include("clinical_ai.inference.urls")),
    path("", include("integrations.bulk.urls")),
    path("", include("integrations.smart.urls")),
    # AuditEvent search before the generic fhir/<type> intake pattern.
    path("", include("integrations.fhir.audit_urls")),
    # Read and search of the resources produced here, before the generic fhir/<type> intake pattern.
    path("", include("integrations.fhir.output_urls")),
    path("", include("integrations.cds_hooks.urls")),
    path("", include("integrations.fhir.urls")),
]
