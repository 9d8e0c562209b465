"""``manage.py deidentify``: de-identify FHIR files offline, like the Microsoft anonymizer's command line.

INPUT is a FHIR JSON file (a resource or a Bundle), an NDJSON file (one resource per line) or a folder of
them; OUTPUT is a file or a folder mirroring INPUT. The same pipeline as the workers: the configuration's
structured rules, Presidio on free text with each patient's own identifiers, one date shift per patient.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from clinical_ai.deid.engine.config import ConfigError
from clinical_ai.deid.files import fhir_files, read_fhir_file
from clinical_ai.deid.services import deidentify_documents


def _write(path: Path, kind: str, outputs: list[Any], bundle: dict[str, Any] | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "ndjson":
        path.write_text(
            "".join(json.dumps(o.resource, ensure_ascii=False) + "\n" for o in outputs), encoding="utf-8"
        )
        return
    if kind == "resource":
        path.write_text(json.dumps(outputs[0].resource, indent=2, ensure_ascii=False), encoding="utf-8")
        return
    assert bundle is not None
    out_bundle = {
        k: v for k, v in bundle.items() if k not in ("entry", "identifier", "id", "meta", "signature")
    }
    out_bundle["entry"] = [
        {**({"fullUrl": o.full_url} if o.full_url else {}), "resource": o.resource} for o in outputs
    ]
    path.write_text(json.dumps(out_bundle, indent=2, ensure_ascii=False), encoding="utf-8")


class Command(BaseCommand):
    help = "De-identify a FHIR JSON file, an NDJSON file or a folder of them with a de-identification config."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("input", type=Path)
        parser.add_argument("output", type=Path)
        parser.add_argument(
            "--config", default="inference", help="shipped name (inference, safe-harbor) or a path"
        )
        parser.add_argument(
            "--organization",
            default="offline",
            help="site slug that scopes patient pseudonyms (default: offline)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        source: Path = options["input"]
        target: Path = options["output"]
        if source.is_dir():
            files = fhir_files(source)
            pairs = [(p, target / p.relative_to(source)) for p in files]
        elif source.is_file():
            pairs = [(source, target)]
        else:
            raise CommandError(f"{source} does not exist")
        resources = 0
        try:
            for in_path, out_path in tqdm(pairs, unit="file", disable=len(pairs) < 2):
                try:
                    kind, entries, bundle = read_fhir_file(in_path)
                except (ValueError, KeyError) as exc:
                    raise CommandError(f"{in_path}: not FHIR JSON/NDJSON ({exc})") from exc
                result = deidentify_documents(
                    entries, organization=options["organization"], config=options["config"]
                )
                _write(out_path, kind, result.outputs, bundle)
                resources += len(result.outputs)
        except ConfigError as exc:
            raise CommandError(f"configuration {options['config']!r}: {exc}") from exc
        self.stdout.write(f"de-identified {resources} resource(s) in {len(pairs)} file(s) into {target}")
