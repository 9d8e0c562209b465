"""The models pages: the catalogue, one model's card and versions, its switch and its monitoring.

Anyone with a role at a site reads the catalogue and the model cards (clinicians see the basis of what they
sign off). Admins also see the manifests that failed to load, each model's monitoring, and the switch: on,
off (the stop switch, effective at once) and a pinned version, changed through ``model_configure``; and
the shadow section: a version run beside the running one, its agreement report, promotion and rollback.
Nobody signed in is sent to the login page; a signed-in user without a role, or a non-admin posting a
change, gets a 403 that is itself on record. Every page shown is an audit event.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from clinical_ai.accounts.selectors import user_is_admin
from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.core.middleware import request_id_of
from clinical_ai.inference import charts
from clinical_ai.inference.forms import ModelSwitchForm, ShadowSetForm, VersionActionForm
from clinical_ai.inference.selectors import (
    ModelDetail,
    Monitoring,
    catalogue_refusals_shown,
    model_detail,
    model_list,
    model_monitoring,
    model_shadow_state,
    running_refusals,
    user_may_view_models,
)
from clinical_ai.inference.switches import (
    SwitchChange,
    SwitchRefused,
    VersionChange,
    model_configure,
    model_promote,
    model_rollback,
    model_shadow_set,
)

MODEL_VIEW_ACTION = "inference.model.view"
MODEL_CONFIGURE_ACTION = "inference.model.configure"
MODEL_SHADOW_ACTION = "inference.model.shadow"
MODEL_PROMOTE_ACTION = "inference.model.promote"
MODEL_ROLLBACK_ACTION = "inference.model.rollback"

_View = Callable[..., HttpResponseBase]


def _record(
    request: HttpRequest,
    *,
    action: str = MODEL_VIEW_ACTION,
    outcome: str = Outcome.SUCCESS,
    model_id: str = "",
    detail: dict[str, Any],
) -> None:
    audit_record(
        actor=Actor.user(str(request.user.pk)),
        action=action,
        outcome=outcome,
        object_type="Model" if model_id else "",
        object_id=model_id,
        request_id=request_id_of(request),
        detail=detail,
    )


def _forbidden(request: HttpRequest, *, action: str, page: str, model_id: str = "") -> HttpResponse:
    _record(
        request,
        action=action,
        outcome=Outcome.FAILURE,
        model_id=model_id,
        detail={"page": page, "status": 403},
    )
    return render(request, "inference/forbidden.html", {"page": page}, status=403)


def members_page(page: str, *, action: str = MODEL_VIEW_ACTION) -> Callable[[_View], _View]:
    """Let in anyone with a role at a site; others get the login page (anonymous) or a recorded 403."""

    def decorate(view: _View) -> _View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not user_may_view_models(request.user):
                return _forbidden(request, action=action, page=page, model_id=kwargs.get("model_id", ""))
            return view(request, *args, **kwargs)

        return never_cache(wrapper)

    return decorate


@members_page("list")
@require_GET
def model_list_view(request: HttpRequest) -> HttpResponse:
    is_admin = user_is_admin(request.user)
    models = model_list()
    refusals = catalogue_refusals_shown() if is_admin else []  # they name files on the server
    _record(request, detail={"page": "list", "shown": len(models)})
    return render(
        request,
        "inference/model_list.html",
        {
            "models": models,
            "refusals": refusals,
            "cannot_run": running_refusals(models),
            "is_admin": is_admin,
        },
    )


def _detail_or_404(model_id: str) -> ModelDetail:
    detail = model_detail(model_id=model_id)
    if detail is None:
        raise Http404("no model with this id in the catalogue")
    return detail


def _switch_form(detail: ModelDetail, data: Any = None) -> ModelSwitchForm:
    summary = detail.summary
    return ModelSwitchForm(
        data,
        versions=detail.version_names,
        initial={"enabled": "on" if summary.enabled else "off", "pinned_version": summary.pinned_version},
    )


def _render_detail(
    request: HttpRequest,
    detail: ModelDetail,
    *,
    is_admin: bool,
    form: ModelSwitchForm | None,
    status: int = 200,
    shadow_form: ShadowSetForm | None = None,
    action_form: VersionActionForm | None = None,
) -> HttpResponse:
    context: dict[str, Any] = {
        "detail": detail,
        "summary": detail.summary,
        "card": detail.card,
        "is_admin": is_admin,
    }
    if is_admin:
        monitoring = model_monitoring(
            model_id=detail.summary.model_id, running_version=detail.summary.running_version
        )
        shadow = model_shadow_state(model_id=detail.summary.model_id)
        context.update(
            form=form or _switch_form(detail),
            monitoring=monitoring,
            charts=_monitoring_charts(monitoring),
            shadow=shadow,
            shadow_form=shadow_form or _shadow_form(detail, shadow.shadow_version),
            shadow_errors=[
                message
                for refused in (shadow_form, action_form)
                if refused is not None
                for messages_ in refused.errors.values()
                for message in messages_
            ],
        )
    return render(request, "inference/model_detail.html", context, status=status)


@members_page("detail")
@require_GET
def model_detail_view(request: HttpRequest, model_id: str) -> HttpResponse:
    detail = _detail_or_404(model_id)
    is_admin = user_is_admin(request.user)
    _record(request, model_id=model_id, detail={"page": "detail", "monitoring": is_admin})
    return _render_detail(request, detail, is_admin=is_admin, form=None)


@members_page("configure", action=MODEL_CONFIGURE_ACTION)
@require_POST
def model_configure_view(request: HttpRequest, model_id: str) -> HttpResponse:
    if not user_is_admin(request.user):
        return _forbidden(request, action=MODEL_CONFIGURE_ACTION, page="configure", model_id=model_id)
    detail = _detail_or_404(model_id)
    form = _switch_form(detail, request.POST)
    if form.is_valid():
        try:
            change = model_configure(
                actor=Actor.user(str(request.user.pk)),
                model_id=model_id,
                enabled=form.cleaned_data["enabled"],
                pinned_version=form.cleaned_data["pinned_version"],
                reason=form.cleaned_data["reason"],
                user_pk=request.user.pk,
                request_id=request_id_of(request),
            )
        except SwitchRefused as exc:
            form.add_error("pinned_version", str(exc))
        else:
            messages.success(request, _change_message(detail.summary.name, change))
            return redirect("inference:model_detail", model_id=model_id)
    # A refused change changes nothing; the attempt is on record, without the reason typed.
    _record(
        request,
        action=MODEL_CONFIGURE_ACTION,
        outcome=Outcome.FAILURE,
        model_id=model_id,
        detail={"page": "configure", "status": 400, "invalid": sorted(form.errors)},
    )
    return _render_detail(request, detail, is_admin=True, form=form, status=400)


def _shadow_form(detail: ModelDetail, current: str, data: Any = None) -> ShadowSetForm:
    running = detail.summary.running_version
    return ShadowSetForm(
        data, versions=[v for v in detail.version_names if v != running], initial={"version": current}
    )


def _version_change_view(
    request: HttpRequest,
    model_id: str,
    *,
    action: str,
    page: str,
    apply: Callable[..., VersionChange],
    message: Callable[[str, VersionChange], str],
    shadow: bool = False,
) -> HttpResponse:
    """Shadow, promote or rollback: admins only; one service call; a refusal changes nothing and is on
    record without the reason typed."""
    if not user_is_admin(request.user):
        return _forbidden(request, action=action, page=page, model_id=model_id)
    detail = _detail_or_404(model_id)
    form: ShadowSetForm | VersionActionForm = (
        _shadow_form(detail, "", request.POST) if shadow else VersionActionForm(request.POST)
    )
    if form.is_valid():
        extra = {"version": form.cleaned_data["version"]} if shadow else {}
        try:
            change = apply(
                actor=Actor.user(str(request.user.pk)),
                model_id=model_id,
                reason=form.cleaned_data["reason"],
                user_pk=request.user.pk,
                request_id=request_id_of(request),
                **extra,
            )
        except SwitchRefused as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, message(detail.summary.name, change))
            return redirect("inference:model_detail", model_id=model_id)
    _record(
        request,
        action=action,
        outcome=Outcome.FAILURE,
        model_id=model_id,
        detail={"page": page, "status": 400, "invalid": sorted(form.errors)},
    )
    forms_shown: dict[str, Any] = (
        {"shadow_form": form} if isinstance(form, ShadowSetForm) else {"action_form": form}
    )
    return _render_detail(request, detail, is_admin=True, form=None, status=400, **forms_shown)


@members_page("shadow", action=MODEL_SHADOW_ACTION)
@require_POST
def model_shadow_view(request: HttpRequest, model_id: str) -> HttpResponse:
    def message(name: str, change: VersionChange) -> str:
        if not change.shadow_version:
            return f"{name}: no version runs in shadow."
        return f"{name}: version {change.shadow_version} runs in shadow beside {change.running_version}."

    return _version_change_view(
        request,
        model_id,
        action=MODEL_SHADOW_ACTION,
        page="shadow",
        apply=model_shadow_set,
        message=message,
        shadow=True,
    )


@members_page("promote", action=MODEL_PROMOTE_ACTION)
@require_POST
def model_promote_view(request: HttpRequest, model_id: str) -> HttpResponse:
    return _version_change_view(
        request,
        model_id,
        action=MODEL_PROMOTE_ACTION,
        page="promote",
        apply=model_promote,
        message=lambda name, change: (
            f"{name} now runs version {change.running_version} (was {change.previous_running_version})."
        ),
    )


@members_page("rollback", action=MODEL_ROLLBACK_ACTION)
@require_POST
def model_rollback_view(request: HttpRequest, model_id: str) -> HttpResponse:
    return _version_change_view(
        request,
        model_id,
        action=MODEL_ROLLBACK_ACTION,
        page="rollback",
        apply=model_rollback,
        message=lambda name, change: (
            f"{name} rolled back to version {change.running_version} "
            f"(from {change.previous_running_version})."
        ),
    )


def _change_message(name: str, change: SwitchChange) -> str:
    if not change.enabled:
        return f"{name} is switched off: it runs nothing more."
    version = f"version {change.pinned_version} (pinned)" if change.pinned_version else "the newest version"
    return f"{name} is on, running {version}."


def _svg(markup: str) -> SafeString:
    # charts.py escapes every text it writes and validates ids and colours: its output is markup.
    return mark_safe(markup)  # noqa: S308


def _monitoring_charts(monitoring: Monitoring) -> dict[str, SafeString]:
    labels = [b.label for b in monitoring.buckets]
    per = "day" if monitoring.unit == "day" else "ISO week"
    outcomes = [
        charts.Series("Accepted", [b.accepted for b in monitoring.buckets], charts.PALETTE["accepted"]),
        charts.Series("Modified", [b.modified for b in monitoring.buckets], charts.PALETTE["modified"]),
        charts.Series("Rejected", [b.rejected for b in monitoring.buckets], charts.PALETTE["rejected"]),
        charts.Series("Pending", [b.pending for b in monitoring.buckets], charts.PALETTE["pending"]),
    ]
    made = sum(b.made for b in monitoring.buckets)
    rates = [b.override_rate for b in monitoring.buckets]
    return {
        "outcomes": _svg(
            charts.stacked_bar_chart(
                chart_id="chart-outcomes",
                title=f"Suggestions made per {per}, by outcome",
                description=(
                    f"{made} suggestions from {labels[0]} to {labels[-1]}, stacked as accepted, modified, "
                    "rejected and pending. The table below gives the figures."
                ),
                labels=labels,
                series=outcomes,
            )
        ),
        "override": _svg(
            charts.line_chart(
                chart_id="chart-override",
                title=f"Override rate per {per}",
                description=(
                    "Rejected suggestions among those decided, by when the suggestion was made; "
                    "no point where none was decided. The table below gives the figures."
                ),
                labels=labels,
                series=[charts.Series("Override rate", rates, charts.PALETTE["override"])],
                percent=True,
            )
        ),
    }
