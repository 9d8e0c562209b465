from django.urls import path, register_converter

from clinical_ai.audit import views


class PseudonymConverter:
    """A patient pseudonym in a URL: the characters pseudonyms and ids are made of, nothing else (so free
    text such as a name with spaces never reaches the view)."""

    regex = r"[A-Za-z0-9._:-]{1,128}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(PseudonymConverter, "pseudonym")

app_name = "audit"

urlpatterns = [
    path("", views.event_list, name="list"),
    path("events/<int:seq>/", views.event_detail, name="event"),
    path("verify/", views.chain_verify, name="verify"),
    path("patients/<pseudonym:pseudonym>/", views.patient_timeline, name="patient"),
    path("export.ndjson", views.export_ndjson, name="export"),
]
