"""The keyed digests the bulk intake stores instead of identifiers: a patient's job key, a resource's key and
its version. HMAC-SHA256 under the pseudonym key, so no table names a patient, a resource id or a version
anyone could compute from the EHR's data."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from django.conf import settings

from clinical_ai.fhir.ndjson import version_marker


def _keyed(text: str) -> str:
    return hmac.new(settings.PSEUDONYM_KEY.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


def patient_key(reference: str) -> str:
    """``IngestJob.patient_key_sha256`` of a bulk job: the keyed HMAC of ``Patient/<id>``."""
    return _keyed(reference)


def resource_key(resource_type: str, resource_id: str) -> str:
    """``SeenResourceVersion.resource_key_sha256``: the keyed HMAC of ``<Type>/<id>``."""
    return _keyed(f"{resource_type}/{resource_id}")


def version_key(resource: dict[str, Any]) -> str:
    """``SeenResourceVersion.version_sha256``: the keyed HMAC of the version marker (``versionId``,
    ``lastUpdated`` or a digest of the content)."""
    return _keyed(version_marker(resource))
