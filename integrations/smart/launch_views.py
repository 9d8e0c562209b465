"""``/launch`` and ``/launch/callback``: clinical-ai opened from inside the EHR (SMART App Launch, EHR
launch). Thin: parse, call one service, redirect or show the refusal page."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from clinical_ai.core.middleware import request_id_of
from integrations.smart.launch_services import LaunchRefused, launch_complete, launch_start
from integrations.smart.views import public_base_url

# What each refusal tells the person, in the words of the page: (heading, what happened, what to do).
_PAGES: dict[str, tuple[str, str, str]] = {
    "unknown-issuer": (
        "This EHR cannot open clinical-ai",
        "The EHR that sent you here is not registered with clinical-ai, so you were not signed in.",
        "Ask your clinical-ai administrator to register this EHR.",
    ),
    "issuer-disabled": (
        "Opening clinical-ai from this EHR is switched off",
        "An administrator has switched off opening clinical-ai from this EHR, so you were not signed in.",
        "Sign in to clinical-ai directly, or ask your clinical-ai administrator.",
    ),
    "no-launch": (
        "The EHR did not say what to open",
        "The link from the EHR is incomplete, so you were not signed in.",
        "Open clinical-ai again from the patient's record in the EHR.",
    ),
    "state": (
        "This link has already been used or has expired",
        "Each opening from the EHR works once and for a few minutes only, so you were not signed in.",
        "Open clinical-ai again from the patient's record in the EHR.",
    ),
    "unknown-user": (
        "Your EHR account is not linked to clinical-ai",
        "clinical-ai does not know who you are in this EHR, so you were not signed in.",
        "Ask your clinical-ai administrator to link your EHR account to your clinical-ai account.",
    ),
    "no-role": (
        "You have no review role at this site",
        "Your clinical-ai account has no clinician or auditor role at the site of this EHR, so you were not "
        "signed in.",
        "Ask your clinical-ai administrator if you should have one.",
    ),
    "no-patient": (
        "No patient was open in the EHR",
        "The EHR did not say which patient's record you opened clinical-ai from, so you were not signed in.",
        "Open clinical-ai from within a patient's record in the EHR.",
    ),
    "other-site": (
        "This link is for another patient or another site",
        "The suggestion this link names is not one of this patient's at this site, so nothing was opened "
        "and you were not signed in.",
        "Open clinical-ai again from the patient's record in the EHR.",
    ),
    "app-context": (
        "This link is for another patient or another site",
        "The link from the EHR names something clinical-ai does not know, so you were not signed in.",
        "Open clinical-ai again from the patient's record in the EHR.",
    ),
    "unreachable": (
        "The EHR's sign-in cannot be reached",
        "clinical-ai could not reach the EHR's sign-in service, so you were not signed in.",
        "Try again in a few minutes. If it keeps happening, tell your clinical-ai administrator.",
    ),
    "client-secret": (
        "clinical-ai is not set up to open from this EHR",
        "Its registration with this EHR cannot be used, so you were not signed in.",
        "Tell your clinical-ai administrator.",
    ),
}
_PAGES["metadata"] = _PAGES["unreachable"]
# The EHR's answer did not verify (nonce, expired id_token, signature, issuer, audience, error...).
_ANSWER_NOT_CHECKED = (
    "The EHR's sign-in could not be checked",
    "The answer from the EHR's sign-in did not pass clinical-ai's checks, so you were not signed in.",
    "Open clinical-ai again from the patient's record in the EHR. If it happens again, tell your "
    "clinical-ai administrator.",
)


def _refused_page(request: HttpRequest, refused: LaunchRefused) -> HttpResponse:
    heading, happened, todo = _PAGES.get(refused.reason, _ANSWER_NOT_CHECKED)
    return render(
        request,
        "smart/launch_refused.html",
        {
            "heading": heading,
            "happened": happened,
            "todo": todo,
            "site_name": refused.site_name,
            "ehr_user": refused.ehr_user,
            "reason": refused.reason,
            "request_id": request_id_of(request),
        },
        status=refused.status,
    )


def _callback_url(request: HttpRequest) -> str:
    return public_base_url(request) + reverse("smart:launch-callback")


@never_cache
@require_GET
def launch(request: HttpRequest) -> HttpResponse:
    """The EHR's launch: ``?iss=<its FHIR base URL>&launch=<opaque>``."""
    try:
        return launch_start(
            request,
            iss=str(request.GET.get("iss") or ""),
            launch=str(request.GET.get("launch") or ""),
            redirect_uri=_callback_url(request),
            request_id=request_id_of(request),
        )
    except LaunchRefused as refused:
        return _refused_page(request, refused)


@never_cache
@require_GET
def launch_callback(request: HttpRequest) -> HttpResponse:
    """The EHR's authorization answer: sign in and land on the patient's review page."""
    try:
        landing = launch_complete(
            request, redirect_uri=_callback_url(request), request_id=request_id_of(request)
        )
    except LaunchRefused as refused:
        return _refused_page(request, refused)
    return HttpResponseRedirect(landing.url)
