"""The Celery application. Queues: ``deid`` (intake and de-identification), ``inference`` (models) and
``bulk`` (Bulk Data pulls from EHR sources: long downloads kept off the other two), each served by its own
workers so each scales on its own machines."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinical_ai.settings")
# Workers run one task per prefork process; BLAS/OpenMP threads inside each would only contend for the
# same cores (measured here: OMP_NUM_THREADS=1 with 2 processes tripled task throughput). Set before numpy,
# spaCy or torch are imported; an operator's explicit value wins.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
# Presidio's email/URL recognizers would otherwise try to download the public suffix list.
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

app = Celery("clinical_ai")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (
    Queue("deid", Exchange("deid", type="direct"), routing_key="deid"),
    Queue("inference", Exchange("inference", type="direct"), routing_key="inference"),
    Queue("bulk", Exchange("bulk", type="direct"), routing_key="bulk"),
)
app.conf.task_routes = {
    "clinical_ai.intake.*": {"queue": "deid"},
    "clinical_ai.deid.*": {"queue": "deid"},
    "clinical_ai.inference.*": {"queue": "inference"},
    "integrations.bulk.*": {"queue": "bulk"},
}
app.autodiscover_tasks()
