from django.apps import AppConfig


class CdsHooksConfig(AppConfig):
    name = "integrations.cds_hooks"
    label = "cds_hooks"
    verbose_name = "CDS Hooks"
