"""Liveness and readiness probes for orchestrators. They reveal nothing but up/down per dependency."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from clinical_ai.accounts.models import Membership
from clinical_ai.accounts.selectors import user_can_audit
from clinical_ai.celery import app as celery_app


# Probes are csrf_exempt: they read nothing from a session, and a POST must get require_GET's 405, not an
# HTML 403 from the CSRF check.
@csrf_exempt
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:  # any driver error means "not ready"; the probe must answer, not raise
        return False
    return True


def _broker_ok() -> bool:
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception:  # same: a probe reports, it does not crash
        return False
    return True


@csrf_exempt
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _database_ok(), "broker": _broker_ok()}
    ready = all(checks.values())
    body = {
        "status": "ready" if ready else "unavailable",
        "checks": {k: "ok" if v else "down" for k, v in checks.items()},
    }
    return JsonResponse(body, status=200 if ready else 503)


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """Where a signed-in person lands: links to what their roles let them use."""
    memberships = Membership.objects.filter(user_id=request.user.pk or 0).select_related("organization")
    return render(
        request,
        "core/home.html",
        {
            "organizations": sorted({m.organization.name for m in memberships}),
            "can_audit": user_can_audit(request.user),
        },
    )
