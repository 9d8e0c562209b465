"""``manage.py model_check MANIFEST [BUNDLE...]``: check a model before it is registered, and dry-run it.

What a hospital's model developer runs on the manifest they wrote: it parses the manifest (features, code
systems, windows, units, missing rules, card sections), hashes every artifact, loads the model file with its
runner and checks it against the features (input width, outputs, reference rows), then, for each FHIR
Bundle, NDJSON file or folder given, de-identifies it exactly as the pipeline does and prints per patient the
features as computed (value, window, sources), the result and what drove it. Nothing is written anywhere.

Exit status: 0 all good; 1 the manifest or its files are refused (the message says why); 3 the model
failed on a patient (the model would fail that patient's run in service).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinical_ai.deid.engine.config import ConfigError
from clinical_ai.inference.engine.manifest import (
    DECLARATIVE_KINDS,
    ManifestError,
    artifacts_verify,
    manifest_load,
)
from clinical_ai.inference.engine.types import Finding, ModelResult, PatientContext
from clinical_ai.inference.management.offline import OfflineInputError, patient_contexts
from clinical_ai.inference.registry import inference_device, model_build
from clinical_ai.inference.services import predict_each

TOP_CONTRIBUTIONS = 8


class Command(BaseCommand):
    help = (
        "Validate a model manifest and its files; dry-run it on FHIR Bundles (features, result, explanation)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("manifest", type=Path, help="the manifest JSON file")
        parser.add_argument("bundles", type=Path, nargs="*", help="FHIR Bundles, NDJSON files or folders")
        parser.add_argument("--organization", default="offline", help="site slug that scopes pseudonyms")
        parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["manifest"]
        if not path.is_file():
            raise CommandError(f"{path}: no such manifest file")
        as_json: bool = options["json"]
        try:
            manifest = manifest_load(path)
            artifacts = artifacts_verify(manifest)
            model = model_build(manifest, device=inference_device())
        except (ManifestError, OSError) as exc:
            raise CommandError(f"refused: {exc}") from exc
        report: dict[str, Any] = {
            "manifest": str(path),
            "model": {
                "id": manifest.id,
                "version": manifest.version,
                "name": manifest.name,
                "kind": manifest.kind,
            },
            "artifacts": [
                {"name": a.name, "path": str(artifacts[a.name]), "sha256": a.sha256}
                for a in manifest.artifacts
            ],
            "features": list(manifest.features.names) if manifest.features else [],
            "patients": [],
        }
        if not as_json:
            self.stdout.write(
                f"manifest ok: {manifest.id} {manifest.version} ({manifest.kind}) {manifest.name}"
            )
            for artifact in manifest.artifacts:
                self.stdout.write(f"  artifact {artifact.name}: sha256 {artifact.sha256[:16]}… matches")
            if manifest.features is not None:
                self.stdout.write(
                    f"  {len(manifest.features)} features: {', '.join(manifest.features.names)}"
                )
            if manifest.kind not in DECLARATIVE_KINDS:
                self.stdout.write(
                    "  (not a declarative model: features and explanations are the entrypoint's own)"
                )
            self.stdout.write("  model file loaded and checked against the manifest")
        failed = 0
        for source in options["bundles"]:
            if not source.exists():
                raise CommandError(f"{source} does not exist")
            try:
                contexts = patient_contexts(source, organization=options["organization"])
            except (ConfigError, OfflineInputError) as exc:
                raise CommandError(str(exc)) from exc
            answers = (
                predict_each(model, contexts, label=f"{manifest.id} {manifest.version}") if contexts else []
            )
            for context, answer in zip(contexts, answers, strict=True):
                patient = _patient_report(source, context, answer)
                failed += bool(patient["failure"])
                report["patients"].append(patient)
                if not as_json:
                    self._print_patient(patient)
        if as_json:
            self.stdout.write(json.dumps(report, indent=2, ensure_ascii=False, default=str))
        elif options["bundles"]:
            scored = len(report["patients"]) - failed
            self.stdout.write(f"{len(report['patients'])} patient(s): {scored} answered, {failed} failed")
        if failed:
            raise CommandError(f"the model failed on {failed} patient(s)", returncode=3)

    def _print_patient(self, patient: dict[str, Any]) -> None:
        write = self.stdout.write
        write("")
        write(f"patient {patient['patient']} ({patient['source']}, {patient['resources']} resources)")
        if patient["failure"]:
            write(f"  FAILED: {patient['failure']}")
        for finding in patient["findings"]:
            evidence = finding["evidence"]
            write(f"  result: {finding['summary']}")
            if evidence.get("as_of"):
                write(f"  prediction time (shifted): {evidence['as_of']}")
            for item in evidence.get("parameters") or []:
                shown = item.get("value") if item.get("status") == "scored" else item.get("imputed", "—")
                sources = len(item.get("refs") or [])
                write(
                    f"    {item.get('label')}: {shown} {item.get('unit') or ''} "
                    f"[{item.get('status')}; {item.get('window')}; {sources} source(s)]"
                )
            explanation = evidence.get("explanation") or {}
            if explanation.get("contributions"):
                write(
                    f"  what drove it ({explanation.get('method')}, {explanation.get('output_space')}; "
                    f"reference {explanation.get('base_value'):.3f} -> this patient {explanation.get('output_value'):.3f}):"
                )
                for item in explanation["contributions"][:TOP_CONTRIBUTIONS]:
                    write(f"    {item['contribution']:+.3f}  {item.get('label')}")
            for sentence in (explanation.get("sentences") or [])[:TOP_CONTRIBUTIONS]:
                write(f"    {sentence['weight']:+.3f}  {sentence['text'][:100]!r}")
        for message in patient["messages"]:
            write(f"  note: {message}")


def _patient_report(source: Path, context: PatientContext, answer: ModelResult | str) -> dict[str, Any]:
    failure = answer if isinstance(answer, str) else answer.failure
    findings: list[Finding] = [] if isinstance(answer, str) else list(answer.findings)
    return {
        "source": source.name,
        "patient": context.patient_pseudonym[:12],
        "resources": len(context.resources),
        "failure": failure,
        "messages": [] if isinstance(answer, str) else list(answer.messages),
        "features": {} if isinstance(answer, str) else dict(answer.features),
        "findings": [
            {
                "key": finding.key,
                "summary": finding.summary,
                "completeness": finding.completeness,
                "score": finding.score,
                "evidence": finding.evidence,
            }
            for finding in findings
        ],
    }
