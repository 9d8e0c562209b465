from django.apps import AppConfig


class SmartConfig(AppConfig):
    name = "integrations.smart"
    label = "smart"

    def ready(self) -> None:
        from clinical_ai.audit.actors import actor_directory_register
        from clinical_ai.audit.models import ActorType
        from integrations.smart.selectors import ehr_client_actor_directory

        # The audit console names EHR clients by their registered names (it imports nothing above it).
        actor_directory_register(ActorType.EHR_CLIENT, ehr_client_actor_directory())
