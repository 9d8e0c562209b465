"""``[base]/AuditEvent``. Include before ``integrations.fhir.urls``, whose ``fhir/<type>`` pattern would
otherwise take the path first."""

from django.urls import re_path

from integrations.fhir import audit_views

app_name = "fhir_audit"

urlpatterns = [
    re_path(r"^fhir/AuditEvent/?$", audit_views.audit_event_type, name="auditevent-type"),
]
