"""The SMART URLs plus one protected view, without the rest of the project's URLs."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path

from integrations.smart.decorators import smart_principal_of, smart_protected

REFUSED: list[str] = []


def _record_refusal(request: HttpRequest) -> None:
    REFUSED.append(request.path)


@smart_protected
def whoami(request: HttpRequest) -> HttpResponse:
    principal = smart_principal_of(request)
    return JsonResponse(
        {
            "client_id": principal.client_id,
            "organization": principal.organization_slug,
            "can_create_observation": principal.can("Observation", "create"),
        }
    )


@smart_protected(on_refused=_record_refusal)
def audited(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [
    path("", include("integrations.smart.urls")),
    path("test/whoami", whoami),
    path("test/audited", audited),
]
