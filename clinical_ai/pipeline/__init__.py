"""One bundle's way through the gateway, and the only module that knows what follows what.

::

    EHR ─ POST /fhir, CDS Hooks ─▶ integrations/fhir, integrations/cds_hooks   validate, authorize
      1 intake          IngestJob rows, sealed entries ─ on commit ─▶ task clinical_ai.deid.deidentify_ingest_job
      2 deid            [queue deid] de-identified copy, vault entries  ┐ one transaction
                        + InferenceRun rows (``deidentify`` below)     ┘ ─ on commit ─▶ task clinical_ai.inference.run_models
      3 inference       [queue inference] models on the de-identified copy; per run one transaction:
                        run finished + Suggestions and FHIR outputs (``models_run`` below)
      4 review          web: a clinician signs a decision; one transaction: Decision, final resources,
                        Provenance + PushJob rows (``suggestion_sign_off`` below) ─ on commit ─▶
      5 back to the EHR task integrations.fhir.push_job_send: the signed resources PUT to the EHR's server

Each stage's rows are jobs (``clinical_ai.core.jobs``): created in the transaction that makes them
necessary, sent by task name on commit, claimed once, finished by their claim holder, swept when lost.
A stage never imports the stage after it: it exposes what it produced (``StageOutcome.patients``, the
``OutputStore`` and ``Delivery`` hooks), and the functions here hand it over inside the same transaction.
Celery tasks (``<stage>/tasks.py``) and views call these functions; the stages never call this package.

Two modules, by the process that runs them: ``worker`` (stages 2 → 3 → 4, in Celery workers, with the
de-identification engines loaded) and ``web`` (stage 4 → 5, in the web process, which never loads Presidio).
"""
