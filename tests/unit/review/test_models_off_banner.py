"""While an admin has switched a model off, the queue says so for every such model (since when, why, what
its silence means) and the suggestion page of that model says its result may be out of date; nothing is
said while the model is on, nor on another model's suggestion page."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from clinical_ai.audit.services import Actor
from clinical_ai.inference.switches import model_configure
from clinical_ai.review.models import Suggestion

pytestmark = pytest.mark.django_db

ADMIN = Actor.system("tests")


def _banner(response: Any) -> str:
    assert response.status_code == 200, response.content[:600]
    found = re.search(r'<div class="notice bad models-off"[^>]*>(.*?)</div>', response.content.decode(), re.S)
    return " ".join(html.unescape(found.group(1)).split()) if found else ""


def _strip_tags(text: str) -> str:
    return re.sub(r"<[^>]+>", "", text)


def _switch_off(monkeypatch: pytest.MonkeyPatch, model_id: str, reason: str = "") -> None:
    with monkeypatch.context() as patch:
        patch.setattr(timezone, "now", lambda: datetime(2025, 3, 1, 14, 2, tzinfo=UTC))
        model_configure(actor=ADMIN, model_id=model_id, enabled=False, reason=reason)


def test_the_queue_names_each_switched_off_model_only_while_it_is_off(
    client: Client, clinician: Any, risk_suggestion: Suggestion, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.force_login(clinician)
    assert _banner(client.get("/review/")) == ""
    _switch_off(monkeypatch, "news2", reason="oxygen scale being checked")
    banner = _strip_tags(_banner(client.get("/review/")))
    assert (
        "NEWS2 early warning score is switched off since 1 Mar 2025, 14:02 (oxygen scale being checked). "
        "It gives no new scores: no NEWS2 early warning score alert does not mean a low score." in banner
    )
    assert "Problem-list gaps" not in banner
    _switch_off(monkeypatch, "problem-list-gaps")
    banner = _strip_tags(_banner(client.get("/review/")))
    assert "NEWS2 early warning score is switched off" in banner
    assert (
        "Problem-list gaps from clinical notes is switched off since 1 Mar 2025, 14:02. It gives no new"
        in banner
    )
    model_configure(actor=ADMIN, model_id="news2", enabled=True)
    model_configure(actor=ADMIN, model_id="problem-list-gaps", enabled=True)
    assert _banner(client.get("/review/")) == ""


def test_today_is_said_as_a_time_alone(client: Client, clinician: Any, risk_suggestion: Suggestion) -> None:
    model_configure(actor=ADMIN, model_id="news2", enabled=False)
    client.force_login(clinician)
    assert re.search(r"switched off since \d\d:\d\d\. It gives", _strip_tags(_banner(client.get("/review/"))))


def test_the_suggestion_page_of_a_switched_off_model_says_its_result_may_be_out_of_date(
    client: Client,
    clinician: Any,
    risk_suggestion: Suggestion,
    problem_suggestion: Suggestion,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client.force_login(clinician)
    risk_url = f"/review/suggestions/{risk_suggestion.external_id}/"
    problem_url = f"/review/suggestions/{problem_suggestion.external_id}/"
    assert _banner(client.get(risk_url)) == ""
    _switch_off(monkeypatch, "news2", reason="oxygen scale being checked")
    banner = _strip_tags(_banner(client.get(risk_url)))
    assert "NEWS2 early warning score is switched off since 1 Mar 2025, 14:02" in banner
    assert "This score may be out of date, and no newer one will come while it is off." in banner
    assert _banner(client.get(problem_url)) == ""  # another model's page: nothing about NEWS2
    model_configure(actor=ADMIN, model_id="news2", enabled=True)
    assert _banner(client.get(risk_url)) == ""
