"""``[base]/{type}`` and ``[base]/{type}/{id}`` for the types this gateway produces. Include before
``integrations.fhir.urls``, whose ``fhir/<type>`` pattern would otherwise take the type path first."""

from django.urls import re_path

from integrations.fhir import output_views
from integrations.fhir.output_search import OUTPUT_TYPES

app_name = "fhir_outputs"

_TYPES = "|".join(OUTPUT_TYPES)

urlpatterns = [
    re_path(rf"^fhir/(?P<resource_type>{_TYPES})/?$", output_views.output_type, name="type"),
    re_path(
        rf"^fhir/(?P<resource_type>{_TYPES})/(?P<resource_id>[A-Za-z0-9\-.]{{1,64}})/?$",
        output_views.output_instance,
        name="instance",
    ),
]
