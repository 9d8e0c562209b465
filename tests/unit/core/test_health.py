from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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


@pytest.mark.django_db
def test_home_sends_anonymous_to_login_and_shows_each_role_its_links(
    client: Client, django_user_model: Any
) -> None:
    from clinical_ai.accounts.models import Membership, Organization, Role

    response = client.get("/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    site = Organization.objects.create(slug="st-elsewhere", name="St Elsewhere General")
    for role in (Role.CLINICIAN, Role.AUDITOR):
        user = django_user_model.objects.create_user(username=f"u-{role}", password="a-long-password-1")
        Membership.objects.create(user=user, organization=site, role=role)
        client.force_login(user)
        page = client.get("/").content.decode()
        assert "St Elsewhere General" in page
        assert ("/audit/" in page) == (role == Role.AUDITOR)
