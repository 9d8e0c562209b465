"""The CDS Hooks 2.0 response invariants, checked on what the services answer (cds-resp-1..7 and the
element rules: uuid, summary under 140 characters, indicator, source.label, suggestion label and uuid,
link label/url/type)."""

from __future__ import annotations

import uuid
from typing import Any

INDICATORS = {"info", "warning", "critical"}
SELECTION_BEHAVIORS = {"at-most-one", "any", "all"}
ACTION_TYPES = {"create", "update", "delete"}
LINK_TYPES = {"absolute", "smart"}


def _uuid(value: Any) -> str:
    assert isinstance(value, str)
    uuid.UUID(value.removeprefix("urn:uuid:"))
    return value


def check_card(card: dict[str, Any]) -> None:
    _uuid(card["uuid"])
    assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140
    assert card["indicator"] in INDICATORS
    assert (
        isinstance(card["source"], dict)
        and isinstance(card["source"]["label"], str)
        and card["source"]["label"]
    )
    if "detail" in card:
        assert isinstance(card["detail"], str)
    suggestions = card.get("suggestions") or []
    for suggestion in suggestions:
        assert isinstance(suggestion["label"], str) and suggestion["label"]
        _uuid(suggestion["uuid"])
        for action in suggestion.get("actions") or []:
            assert action["type"] in ACTION_TYPES
            assert isinstance(action.get("description"), str) and action["description"]  # cds-resp-5
            if action["type"] == "delete":  # cds-resp-2
                assert action.get("resourceId") and "resource" not in action
            else:
                assert isinstance(action.get("resource"), dict) and action["resource"].get("resourceType")
    if suggestions:  # cds-resp-6
        assert card.get("selectionBehavior") in SELECTION_BEHAVIORS  # cds-resp-7
    if card.get("selectionBehavior") == "at-most-one":  # cds-resp-1
        assert sum(1 for s in suggestions if s.get("isRecommended")) <= 1
    for reason in card.get("overrideReasons") or []:  # cds-resp-4
        assert reason.get("code") and reason.get("display")
    for link in card.get("links") or []:
        assert isinstance(link["label"], str) and link["label"]
        assert isinstance(link["url"], str) and link["url"].startswith(("http://", "https://"))
        assert link["type"] in LINK_TYPES
        if link["type"] != "smart":  # cds-resp-3
            assert "appContext" not in link


def check_response(body: Any) -> list[dict[str, Any]]:
    assert isinstance(body, dict) and isinstance(body.get("cards"), list)
    seen = set()
    for card in body["cards"]:
        check_card(card)
        assert card["uuid"] not in seen
        seen.add(card["uuid"])
    return list(body["cards"])


def check_outcome(body: Any) -> None:
    assert isinstance(body, dict) and body["resourceType"] == "OperationOutcome"
    assert body["issue"] and all(i["severity"] and i["code"] for i in body["issue"])
