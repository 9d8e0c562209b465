"""What every bad-input test checks: the answer is a clear error (an OperationOutcome, or a bare 401 for
auth), never a 5xx, and a refused request wrote nothing but the audit row of its own refusal."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import Max, Model

from clinical_ai.audit.models import AuditEvent, Outcome
from clinical_ai.deid.models import DeidentifiedResource, PseudonymVaultEntry
from clinical_ai.inference.models import InferenceRun, ShadowRun
from clinical_ai.intake.models import IngestJob, RawResource
from clinical_ai.review.models import Decision, OutputResource, Suggestion
from integrations.cds_hooks.models import CardFeedback, CdsIssuer, IssuedCard
from integrations.fhir.models import PushJob
from integrations.smart.models import AccessToken, EhrClient

# Every row intake, de-identification, inference, review, push, CDS Hooks and token issue write. Not here:
# the audit log (a refusal is audited, checked apart) and the replay guards UsedAssertion / UsedJwt (a
# presented JWT's jti is spent whether or not the request it came with is then refused: that is the point).
WRITTEN_MODELS: tuple[type[Model], ...] = (
    IngestJob,
    RawResource,
    DeidentifiedResource,
    PseudonymVaultEntry,
    InferenceRun,
    ShadowRun,
    Suggestion,
    OutputResource,
    Decision,
    PushJob,
    IssuedCard,
    CardFeedback,
    CdsIssuer,
    EhrClient,
    AccessToken,
)

# Cases run per test or property, written out at the end of the session (see conftest).
CASE_COUNTS: Counter[str] = Counter()


@dataclass(frozen=True)
class Snapshot:
    counts: Mapping[str, int]
    last_audit_id: int


def snapshot() -> Snapshot:
    return Snapshot(
        counts={model._meta.label: model._default_manager.count() for model in WRITTEN_MODELS},
        last_audit_id=AuditEvent.objects.aggregate(last=Max("id"))["last"] or 0,
    )


def assert_nothing_written(before: Snapshot, what: str = "") -> None:
    """No row of any stage was added or removed; audit rows added since are refusals only."""
    after = snapshot()
    changed = {
        label: (count, after.counts[label])
        for label, count in before.counts.items()
        if after.counts[label] != count
    }
    assert not changed, f"a refused request wrote rows {changed} {what}"
    succeeded = list(
        AuditEvent.objects.filter(id__gt=before.last_audit_id)
        .exclude(outcome=Outcome.FAILURE)
        .values_list("action", flat=True)
    )
    assert not succeeded, f"a refused request was audited as a success: {succeeded} {what}"


def _body_json(content: bytes) -> Any:
    return json.loads(content.decode("utf-8"))


def assert_operation_outcome(content: bytes, what: str = "") -> dict[str, Any]:
    body = _body_json(content)
    assert isinstance(body, dict) and body.get("resourceType") == "OperationOutcome", (what, content[:300])
    issues = body.get("issue")
    assert isinstance(issues, list) and issues, (what, body)
    for issue in issues:
        assert issue.get("severity") in ("fatal", "error", "warning"), (what, issue)
        assert isinstance(issue.get("code"), str) and issue["code"], (what, issue)
        assert issue["code"] != "exception", f"an internal error leaked as an issue: {issue} {what}"
    return body


def assert_fhir_refusal(status: int, content: bytes, headers: Mapping[str, str], what: str = "") -> None:
    """A refused FHIR request: 4xx, and either a bare 401 with WWW-Authenticate or an OperationOutcome."""
    assert status < 500, f"{status} {what}: {content[:500]!r}"
    assert 400 <= status < 500, f"{status} {what}"
    if status == 401:
        assert content == b"", (what, content[:200])
        assert headers.get("WWW-Authenticate", "").startswith("Bearer"), (what, dict(headers))
        return
    assert headers.get("Content-Type", "").startswith("application/fhir+json"), (what, dict(headers))
    assert_operation_outcome(content, what)
