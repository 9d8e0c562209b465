"""A switched-off model gets a card, instead of silence, on every hook where it would have answered (it could
give one of the urgencies the service shows): indicator info, the same on every patient's chart."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.services import Actor
from clinical_ai.inference.switches import model_configure
from clinical_ai.review.models import Suggestion
from integrations.cds_hooks.models import CdsIssuer
from tests.unit.cds_hooks.conftest import Signer, call, hook_body
from tests.unit.cds_hooks.invariants import check_response

pytestmark = pytest.mark.django_db

ADMIN = Actor.system("tests")


def _cards(client: Client, sign: Signer, hook: str) -> list[dict[str, Any]]:
    path = f"/clinical-ai-{hook}"
    response = call(client, path, hook_body(hook), sign(path))
    assert response.status_code == 200, response.content
    return check_response(response.json())


def _off_cards(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [card for card in cards if card["summary"].startswith("Switched off")]


def test_no_card_while_every_model_is_on(
    client: Client, issuer: CdsIssuer, sign: Signer, risk_suggestion: Suggestion
) -> None:
    assert _off_cards(_cards(client, sign, "patient-view")) == []


def test_news2_switched_off_is_said_on_every_hook_it_answers(
    client: Client,
    issuer: CdsIssuer,
    sign: Signer,
    risk_suggestion: Suggestion,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(timezone, "now", lambda: datetime(2025, 3, 1, 14, 2, tzinfo=UTC))
        model_configure(actor=ADMIN, model_id="news2", enabled=False, reason="oxygen scale [checked]")
    for hook in ("patient-view", "order-select", "order-sign", "encounter-discharge"):
        cards = _cards(client, sign, hook)
        [card] = _off_cards(cards)
        assert card["indicator"] == "info"
        assert card["summary"] == "Switched off: NEWS2 early warning score gives no new results"
        assert "since 2025-03-01 14:02 UTC (reason: oxygen scale \\[checked\\])" in card["detail"]
        assert "does not mean a low score" in card["detail"]
        assert card["source"]["topic"]["code"] == "news2"
        assert card is cards[-1] or cards[-1]["summary"].startswith("Analysis")  # after the patient's own
    again = _off_cards(_cards(client, sign, "patient-view"))
    assert again[0]["uuid"] == card["uuid"]  # one switch-off, one card identity
    recorded = AuditEvent.objects.filter(action="cds.service.call").latest("seq")
    assert recorded.detail["models_off_cards"] == 1


def test_a_model_that_never_warns_is_not_mentioned_while_ordering(
    client: Client, issuer: CdsIssuer, sign: Signer, problem_suggestion: Suggestion
) -> None:
    model_configure(actor=ADMIN, model_id="problem-list-gaps", enabled=False)
    [card] = _off_cards(_cards(client, sign, "patient-view"))
    assert "does not mean there is nothing to find" in card["detail"]
    assert _off_cards(_cards(client, sign, "order-sign")) == []
    model_configure(actor=ADMIN, model_id="problem-list-gaps", enabled=True)
    assert _off_cards(_cards(client, sign, "patient-view")) == []
