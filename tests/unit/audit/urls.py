"""The project's URLs plus the audit console, the accounts views and FHIR AuditEvent search, included the way
clinical_ai/urls.py is to include them (FHIR AuditEvent before the generic FHIR type endpoint). Once the
project's urls.py has them, nothing is added twice: this is then the project's URLconf unchanged."""

from typing import cast

from django.urls import URLPattern, URLResolver, include, path

from clinical_ai import urls as project_urls

_present = {p.namespace for p in project_urls.urlpatterns if isinstance(p, URLResolver)}
_ours = [
    ("accounts", path("accounts/", include("clinical_ai.accounts.urls"))),
    ("audit", path("audit/", include("clinical_ai.audit.urls"))),
    ("fhir_audit", path("", include("integrations.fhir.audit_urls"))),
]

urlpatterns: list[URLPattern | URLResolver] = [p for namespace, p in _ours if namespace not in _present]
urlpatterns += cast("list[URLPattern | URLResolver]", project_urls.urlpatterns)
