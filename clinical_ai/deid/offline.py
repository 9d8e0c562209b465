"""De-identifying FHIR files offline: what ``manage.py deidentify`` does with each file.

Two ways to run a configuration:

* **reference**: as the Microsoft FHIR anonymizer's command line does. Each JSON file (a resource or a whole
  Bundle) and each NDJSON line is one input to the engine, with the configuration's own keys; nothing is
  grouped by patient. A configuration in the Microsoft format gives what that tool gives (its 33 functional
  tests come out as expected).
* **pipeline**: as the gateway's workers do. Entries are grouped by patient (one pseudonym and one date
  shift each, the patient's own identifiers handed to the text scrubber), with this installation's keys.

``auto`` picks pipeline for the shipped configurations (``inference``, ``safe-harbor``) and for a
configuration that uses our additions (``scrub``, ``dateShiftKeepTime``), reference for the rest.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from clinical_ai.deid.engine.config import CONFIG_DIR, AnonymizerConfig, Method, ProcessingErrors, load_config
from clinical_ai.deid.engine.fhirpath_values import FhirPathEvaluationError
from clinical_ai.deid.engine.pipeline import skipped_resource
from clinical_ai.deid.engine.rules import InvalidResourceError, ProcessingError, StructuredAnonymizer
from clinical_ai.deid.engine.types import TextScrubber
from clinical_ai.deid.files import entries_of, read_documents


class Mode(StrEnum):
    AUTO = "auto"
    REFERENCE = "reference"
    PIPELINE = "pipeline"


class OfflineError(ValueError):
    """A file could not be de-identified; the message names the file and the problem, without its values."""


def uses_our_additions(config: AnonymizerConfig) -> bool:
    """Whether a configuration relies on what the Microsoft tool does not have (so it was written for the
    pipeline): the ``scrub`` method or ``dateShiftKeepTime``."""
    return config.parameters.date_shift_keep_time or any(r.method is Method.SCRUB for r in config.rules)


def resolve_mode(config_name: str, config: AnonymizerConfig, mode: Mode) -> Mode:
    if mode is not Mode.AUTO:
        return mode
    shipped = (CONFIG_DIR / f"{config_name}.json").is_file()
    return Mode.PIPELINE if shipped or uses_our_additions(config) else Mode.REFERENCE


@dataclass
class Outcome:
    """One file's result: the documents to write (one per input document) and what was skipped."""

    documents: list[dict[str, Any]]
    resources: int
    skipped: list[str] = field(default_factory=list)  # "line 3: Patient (ProcessingError: ...)"


class Engine(Protocol):
    def run(self, kind: str, documents: list[dict[str, Any]], *, scope_key: str | None) -> Outcome: ...


_RAISE_HINT = " (the configuration's processingErrors is raise; skip would empty the resource instead)"


class ReferenceEngine:
    """The configuration applied to each document on its own, as the reference tool applies it.

    ``processingErrors: skip`` is handled here rather than inside the engine (which is given ``raise``), so
    the command knows which document was emptied and why, and can say so; the emptied document is what the
    engine would have returned: its resource type and a REDACTED label."""

    def __init__(
        self, config: AnonymizerConfig, *, today: Callable[[], date], scrubber: TextScrubber | None
    ) -> None:
        self._skip = config.processing_errors is ProcessingErrors.SKIP
        strict = replace(config, processing_errors=ProcessingErrors.RAISE) if self._skip else config
        self._anonymizer = StructuredAnonymizer(strict, today=today)
        self._scrubber = scrubber

    def run(self, kind: str, documents: list[dict[str, Any]], *, scope_key: str | None) -> Outcome:
        outcome = Outcome([], 0)
        for number, document in enumerate(documents, start=1):
            where = f"line {number}: " if kind == "ndjson" else ""
            try:
                output = self._anonymizer.anonymize(document, scrubber=self._scrubber, scope_key=scope_key)
            except (ProcessingError, FhirPathEvaluationError, InvalidResourceError) as exc:
                if not self._skip or isinstance(exc, InvalidResourceError):
                    hint = "" if isinstance(exc, InvalidResourceError) else _RAISE_HINT
                    raise OfflineError(f"{where}{type(exc).__name__}: {exc}{hint}") from exc
                output = skipped_resource(str(document["resourceType"]))
                outcome.skipped.append(f"{where}{document['resourceType']} ({type(exc).__name__}: {exc})")
            outcome.documents.append(output)
            outcome.resources += _resource_count(output)
        return outcome


def _resource_count(document: dict[str, Any]) -> int:
    if document.get("resourceType") == "Bundle":
        return sum(1 for e in document.get("entry") or [] if isinstance(e, dict) and e.get("resource"))
    return 1


class PipelineEngine:
    """The workers' pipeline (``deidentify_documents``): entries grouped by patient across the file."""

    def __init__(self, config_name: str, *, organization: str, reference_date: date | None) -> None:
        self._config_name = config_name
        self._organization = organization
        self._reference_date = reference_date

    def run(self, kind: str, documents: list[dict[str, Any]], *, scope_key: str | None) -> Outcome:
        from clinical_ai.deid.services import deidentify_documents  # Django settings: loaded only here

        entries, bundle = entries_of(kind, documents)
        try:
            result = deidentify_documents(
                entries,
                organization=self._organization,
                config=self._config_name,
                reference_date=self._reference_date,
            )
        except (ProcessingError, FhirPathEvaluationError, InvalidResourceError) as exc:
            raise OfflineError(f"{type(exc).__name__}: {exc}") from exc
        by_index = {e.index: e for e in entries}
        label = "line" if kind == "ndjson" else "entry"
        number = 1 if kind == "ndjson" else 0  # NDJSON lines count from 1, Bundle entries from 0
        skipped = [
            f"{label} {i + number}: {by_index[i].resource.get('resourceType')}"
            if kind != "resource"
            else str(by_index[i].resource.get("resourceType"))
            for i in result.skipped
        ]
        if kind == "ndjson":
            out_documents = [o.resource for o in result.outputs]
        elif kind == "resource":
            out_documents = [result.outputs[0].resource]
        else:
            assert bundle is not None
            # The Bundle's own identifiers go; its entries are the de-identified resources.
            shell = {
                k: v for k, v in bundle.items() if k not in ("entry", "identifier", "id", "meta", "signature")
            }
            shell["entry"] = [
                {**({"fullUrl": o.full_url} if o.full_url else {}), "resource": o.resource}
                for o in result.outputs
            ]
            out_documents = [shell]
        return Outcome(out_documents, len(result.outputs), skipped)


def build_engine(
    config_name: str,
    *,
    mode: Mode,
    organization: str,
    reference_date: date | None,
    scrubber_factory: Callable[[], TextScrubber],
) -> tuple[Mode, Engine, AnonymizerConfig]:
    """The engine for a configuration (a shipped name or a path). Raises ``ConfigError`` for a bad one."""
    shipped = CONFIG_DIR / f"{config_name}.json"  # as ``runtime.config_path``, without loading Presidio
    config = load_config(shipped if shipped.is_file() else Path(config_name))
    chosen = resolve_mode(config_name, config, mode)
    if chosen is Mode.PIPELINE:
        return (
            chosen,
            PipelineEngine(config_name, organization=organization, reference_date=reference_date),
            config,
        )
    uses_scrub = any(r.method is Method.SCRUB for r in config.rules)
    today: Callable[[], date] = date.today if reference_date is None else (lambda: reference_date)
    engine = ReferenceEngine(config, today=today, scrubber=scrubber_factory() if uses_scrub else None)
    return chosen, engine, config


def validation_problem(documents: list[dict[str, Any]], kind: str) -> str | None:
    """The first FHIR R4 problem of the documents (validated with the R4B models, as intake does), or None."""
    from clinical_ai.fhir.validation_resource import validate_resource

    for number, document in enumerate(documents, start=1):
        issues = validate_resource(document)
        if issues:
            where = f"line {number}: " if kind == "ndjson" else ""
            first = issues[0]
            path = f" at {first.expression[0]}" if first.expression else ""
            more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
            return f"{where}{first.diagnostics}{path}{more}"
    return None


def write_documents(path: Path, kind: str, documents: list[dict[str, Any]]) -> None:
    """Write the output whole or not at all (a temporary file renamed into place), so an interrupted run
    never leaves a half-written file that ``--skip-existing`` would then take for done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "ndjson":
        text = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in documents)
    else:
        text = json.dumps(documents[0], indent=2, ensure_ascii=False)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class FileJob:
    source: Path
    target: Path
    scope_key: str | None  # dateShiftScope file/folder: the file's or the input folder's name


def deidentify_file(
    job: FileJob, *, engine: Engine, bulk: bool, validate_input: bool, validate_output: bool
) -> Outcome:
    """Read, (validate,) de-identify, (validate,) write one file. Raises :class:`OfflineError`."""
    kind, documents = read_documents(job.source, bulk=bulk)
    if validate_input and (problem := validation_problem(documents, kind)):
        raise OfflineError(f"invalid FHIR R4 input: {problem}")
    outcome = engine.run(kind, documents, scope_key=job.scope_key)
    if validate_output and (problem := validation_problem(outcome.documents, kind)):
        raise OfflineError(f"the de-identified output is not valid FHIR R4: {problem}")
    write_documents(job.target, kind, outcome.documents)
    return outcome
