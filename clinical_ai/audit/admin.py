"""The audit log is deliberately not in the Django admin.

It is read through the audit console (``clinical_ai.audit.views``), where every page shown is itself an
audit event; an admin changelist would be a second, unrecorded way to read it.
"""
