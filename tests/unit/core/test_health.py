from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import Client

from clinical_ai.celery import app as celery_app


def test_healthz_answers_without_touching_anything(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_database_and_broker(client: Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


@pytest.fixture
def unreachable_broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point the app at a port where nothing listens (a real refused connection, not a mock). Celery reads
    the CELERY_BROKER_URL environment variable before its configuration, so both change."""
    dead = "redis://127.0.0.1:9/0"
    original = celery_app.conf.broker_url  # read before the environment changes: Celery prefers it
    monkeypatch.setenv("CELERY_BROKER_URL", dead)
    celery_app.conf.update(broker_url=dead)
    try:
        yield
    finally:
        celery_app.conf.update(broker_url=original)


@pytest.mark.django_db
def test_readyz_is_503_when_the_broker_is_down(client: Client, unreachable_broker: None) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "checks": {"database": "ok", "broker": "down"}}


def test_probes_refuse_other_methods(client: Client) -> None:
    assert client.post("/healthz").status_code == 405


def test_request_id_is_echoed_or_minted(client: Client) -> None:
    assert client.get("/healthz", headers={"X-Request-Id": "abc-123"})["X-Request-Id"] == "abc-123"
    minted = client.get("/healthz", headers={"X-Request-Id": "bad id with spaces\n"})["X-Request-Id"]
    assert minted != "bad id with spaces\n" and len(minted) == 36
