"""``manage.py run_model MODEL_ID INPUT``: run one model offline on FHIR files and print its FHIR output.

How a model developer checks a model before an admin enables it. INPUT is a Bundle, an NDJSON file or a
folder of them; each file is de-identified with the ``inference`` configuration exactly as the pipeline does,
its resources are grouped by patient, and the model runs on the de-identified copy. The output is a FHIR
Bundle (collection) of what the service would store: the GuidanceResponse per patient, the model's Device,
and the RiskAssessment / DetectedIssue / RequestGroup of each finding. Nothing is written to the database.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from clinical_ai.deid.engine.config import ConfigError
from clinical_ai.inference.engine.fhir_output import RunContext, run_resources
from clinical_ai.inference.engine.manifest import ManifestError
from clinical_ai.inference.management.offline import OfflineInputError, patient_contexts
from clinical_ai.inference.registry import catalogue, inference_device, model_build
from clinical_ai.inference.services import context_sha256


class Command(BaseCommand):
    help = (
        "Run one model offline on a FHIR Bundle, NDJSON file or folder (de-identified first); print a Bundle."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model_id")
        parser.add_argument("input", type=Path)
        parser.add_argument(
            "--model-version", default="", help="a version of the model (default: the newest)"
        )
        parser.add_argument("--organization", default="offline", help="site slug that scopes pseudonyms")
        parser.add_argument("--evidence", action="store_true", help="also print each finding's evidence")

    def handle(self, *args: Any, **options: Any) -> None:
        source: Path = options["input"]
        if not source.exists():
            raise CommandError(f"{source} does not exist")
        manifest = catalogue().manifest(options["model_id"], options["model_version"])
        if manifest is None:
            known = ", ".join(sorted(catalogue().models)) or "none"
            raise CommandError(f"no model {options['model_id']!r} {options['version']} (known: {known})")
        try:
            model = model_build(manifest, device=inference_device())
            contexts = patient_contexts(source, organization=options["organization"])
        except (ManifestError, ConfigError, OfflineInputError) as exc:
            raise CommandError(str(exc)) from exc
        results = model.predict(contexts) if contexts else []
        entries: list[dict[str, Any]] = []
        device_added = False
        for context, result in zip(contexts, results, strict=True):
            run_id = str(uuid.uuid4())
            output = run_resources(
                RunContext(
                    run_id=run_id,
                    model=manifest,
                    patient_pseudonym=context.patient_pseudonym,
                    occurred=timezone.now(),
                    input_sha256=context_sha256(context),
                ),
                result,
                {finding.key: str(uuid.uuid4()) for finding in result.findings},
            )
            if not device_added:
                entries.append(_entry(output.device))
                device_added = True
            entries.append(_entry(output.guidance_response))
            for finding in result.findings:
                for resource in output.per_finding[finding.key].resources:
                    entries.append(_entry(resource))
                if options["evidence"]:
                    self.stderr.write(
                        f"{context.patient_pseudonym} {finding.key}: {finding.summary}\n"
                        + json.dumps(finding.evidence, indent=2, ensure_ascii=False, default=str)
                    )
            for message in result.messages:
                self.stderr.write(f"{context.patient_pseudonym}: {message}")
        bundle = {
            "resourceType": "Bundle",
            "type": "collection",
            "timestamp": timezone.now().isoformat(),
            "entry": entries,
        }
        self.stdout.write(json.dumps(bundle, indent=2, ensure_ascii=False))


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}
