"""The Celery application. Queues: ``deid`` (intake and de-identification) and ``inference`` (models),
each served by its own workers so each scales on its own machines."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinical_ai.settings")

app = Celery("clinical_ai")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (
    Queue("deid", Exchange("deid", type="direct"), routing_key="deid"),
    Queue("inference", Exchange("inference", type="direct"), routing_key="inference"),
)
app.conf.task_routes = {
    "clinical_ai.intake.*": {"queue": "deid"},
    "clinical_ai.deid.*": {"queue": "deid"},
    "clinical_ai.inference.*": {"queue": "inference"},
}
app.autodiscover_tasks()
