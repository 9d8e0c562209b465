"""Declarative FHIR feature extraction: milliseconds per patient on one core.

A bring-your-own-model run computes its manifest's features for every patient of a batch before the model
sees a row, so extraction must stay small beside the model itself. This measures ``features_extract`` on a
500-resource patient: the Synthea patient of ``../shared/data`` with the most resources, its Patient resource and its newest
499 other resources (bundle order is chronological), with the feature set of the worked example
``fixtures/models/ed-visit-90d/manifest.json``.
Each call indexes the record afresh (nothing is remembered between calls), as for a new patient.

It then measures what a run of the worked example costs per patient: ``predict()`` of the model the registry
builds from ``fixtures/models/ed-visit-90d/manifest.json`` (feature extraction, the ONNX model, TreeSHAP
explanation and the result's evidence and sealed record), over every Synthea patient, once as one batched call
with all of them and once as one call per patient, rounds alternating so that both see the same machine. The
bundles are given as they are (raw, not de-identified: the cost is the same, and the service would pass the
same resource types, the model's own filter dropping the others).

    OMP_NUM_THREADS=1 python benchmarks/feature_extraction.py --markdown docs/benchmarks.md

prints the figures and, with ``--markdown``, writes them between the markers of the section "Feature
extraction (declarative FHIR features)" of that file (other sections are kept).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _harness import ROOT, script_environment  # this folder: the script's own

script_environment(DATABASE_URL="", CELERY_BROKER_URL="")

import django  # noqa: E402

django.setup()  # the registry's module holds the deployment model; nothing here touches the database

import numpy as np  # noqa: E402
from _bundles import DEFAULT_DATA, SYNTHEA_DIR, patient_bundles  # noqa: E402
from _harness import machine, percentile, version, write_between_markers  # noqa: E402
from ed_visit_model import bundle_context  # noqa: E402

from clinical_ai.inference.builtin.declarative import DeclarativeTabularModel, readable  # noqa: E402
from clinical_ai.inference.engine.features.extract import features_extract  # noqa: E402
from clinical_ai.inference.engine.features.types import FeatureSet  # noqa: E402
from clinical_ai.inference.engine.manifest import manifest_load  # noqa: E402
from clinical_ai.inference.engine.types import ModelResult, PatientContext  # noqa: E402
from clinical_ai.inference.registry import model_build  # noqa: E402

HEADING = "## Feature extraction (declarative FHIR features)"
BEGIN, END = "<!-- feature-extraction:start -->", "<!-- feature-extraction:end -->"
MANIFEST = ROOT / "fixtures" / "models" / "ed-visit-90d" / "manifest.json"
RESOURCES = 500
TARGET_MS = 50.0


def feature_set_load() -> tuple[FeatureSet, str]:
    """The worked example's features, parsed as the service parses its manifest."""
    if not MANIFEST.is_file():
        raise SystemExit(f"{MANIFEST} is absent: run benchmarks/ed_visit_model.py first")
    manifest = manifest_load(MANIFEST)
    assert manifest.features is not None, "the worked example declares its features"
    return manifest.features, str(MANIFEST.relative_to(ROOT))


def synthea_patients(data_dir: Path) -> list[PatientContext]:
    """Every Synthea patient bundle, whole and raw (all resource types), one context each."""
    contexts = [
        bundle_context(path, label=f"patient {i + 1}") for i, path in enumerate(patient_bundles(data_dir))
    ]
    if not contexts:
        raise SystemExit(f"no Synthea patient bundles under {data_dir / SYNTHEA_DIR}")
    return contexts


def patient_context(contexts: list[PatientContext]) -> tuple[PatientContext, int]:
    """The patient with the most resources, cut to ``RESOURCES`` resources: its Patient and the newest others
    (bundle order is chronological)."""
    whole = max(contexts, key=lambda context: len(context.resources))
    patients = whole.of_type("Patient")
    others = [s for s in whole.resources if s.resource_type != "Patient"]
    if len(patients) != 1 or len(whole.resources) < RESOURCES:
        raise SystemExit(f"expected one patient and at least {RESOURCES} resources in the largest bundle")
    # Named "benchmark": the bundle's file name is the synthetic patient's name.
    return PatientContext("benchmark", tuple(patients + others[-(RESOURCES - 1) :])), len(whole.resources)


def pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to core {core}"
    return "not pinned (no sched_setaffinity here)"


def measure(feature_set: FeatureSet, context: PatientContext, *, repeat: int, warm_up: int) -> list[float]:
    for _ in range(warm_up):
        features_extract(feature_set, context)
    timings = []
    gc.collect()
    for _ in range(repeat):
        started = time.perf_counter()
        features_extract(feature_set, context)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def _scores(results: list[ModelResult]) -> list[float | None]:
    return [result.record.get("probability") if result.record else None for result in results]


def model_measure(
    model: DeclarativeTabularModel, contexts: list[PatientContext], *, rounds: int, warm_up: int
) -> dict[str, Any]:
    """ms/patient of ``predict()``: all patients in one call against one call per patient, alternating in
    each round; then, for the batched call, how its time splits between extraction, model and explanation."""
    batched_results = model.predict(contexts)
    single_results = [result for context in contexts for result in model.predict([context])]
    if _scores(batched_results) != _scores(single_results):
        raise SystemExit("batched and per-patient predict() gave different probabilities")
    scored = sum(not result.failure and bool(result.findings) for result in batched_results)
    for _ in range(warm_up):
        model.predict(contexts)
        for context in contexts:
            model.predict([context])
    batched: list[float] = []
    single: list[float] = []
    gc.collect()
    for _ in range(rounds):
        started = time.perf_counter()
        model.predict(contexts)
        batched.append((time.perf_counter() - started) * 1000 / len(contexts))
        started = time.perf_counter()
        for context in contexts:
            model.predict([context])
        single.append((time.perf_counter() - started) * 1000 / len(contexts))
    stages: dict[str, list[float]] = {"extract": [], "model": [], "explain": []}
    for _ in range(rounds):
        started = time.perf_counter()
        rows = np.asarray(
            [features_extract(model.features, readable(c, model.manifest)).row for c in contexts],
            dtype=np.float64,
        )
        extracted = time.perf_counter()
        model.runner.predict(rows)
        predicted = time.perf_counter()
        model.explainer.explain(rows)
        explained = time.perf_counter()
        for name, seconds in (
            ("extract", extracted - started),
            ("model", predicted - extracted),
            ("explain", explained - predicted),
        ):
            stages[name].append(seconds * 1000 / len(contexts))
    sizes = [len(c.resources) for c in contexts]
    read = [len(readable(c, model.manifest).resources) for c in contexts]
    return {
        "patients": len(contexts),
        "scored": scored,
        "resources_min": min(sizes),
        "resources_max": max(sizes),
        "resources_total": sum(sizes),
        "read_total": sum(read),
        "rounds": rounds,
        "warm_up": warm_up,
        "batched_median_ms": statistics.median(batched),
        "batched_p95_ms": percentile(batched, 0.95),
        "single_median_ms": statistics.median(single),
        "single_p95_ms": percentile(single, 0.95),
        "ratio": statistics.median(single) / statistics.median(batched),
        "stages_ms": {name: statistics.median(values) for name, values in stages.items()},
        "explainer": type(model.explainer).__name__,
    }


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    types = ", ".join(f"{name} {count}" for name, count in results["types"])
    aggregates = ", ".join(f"{name} {count}" for name, count in results["aggregates"])
    verdict = "met" if results["p95_ms"] < TARGET_MS else "NOT met"
    lines = [
        f"Measured {results['date']} with:",
        "",
        "```sh",
        results["command"],
        "```",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['os']}; Python {m['python']}, onnxruntime "
        f"{results['onnxruntime']}; OMP_NUM_THREADS={m['OMP_NUM_THREADS']}. One process, {results['pinning']}. "
        f"Load average (1, 5, 15 min) at the start {m['load_average']}.",
        "",
        "### Feature extraction, one 500-resource patient",
        "",
        f"`features_extract` on one patient of {results['resources']} resources (most numerous: {types}), cut "
        f"from the Synthea bundle with the most resources ({results['bundle_resources']} resources: its Patient "
        f"and the newest others), with the {results['features']} features of {results['feature_source']} "
        f"({aggregates}). {results['repeat']} timed calls after {results['warm_up']} warm-up calls; every call "
        "indexes the record afresh, as for a new patient.",
        "",
        "| per patient | median | p95 | max | target |",
        "|:---|---:|---:|---:|---:|",
        f"| milliseconds | {results['median_ms']:.2f} | {results['p95_ms']:.2f} | {results['max_ms']:.2f} "
        f"| < {TARGET_MS:.0f} |",
        "",
        f"**p95 {results['p95_ms']:.1f} ms per 500-resource patient against a target of {TARGET_MS:.0f} ms: "
        f"{verdict}.**",
    ]
    model = results.get("model")
    if model:
        stages = model["stages_ms"]
        lines += [
            "",
            "### The worked example model: extraction, prediction and explanation per patient",
            "",
            f"`predict()` of `ed-visit-90d` as the registry builds it (`model_build(manifest_load("
            f'fixtures/models/ed-visit-90d/manifest.json), device="cpu")`: ONNX gradient-boosted trees, '
            f"{model['explainer']}) on all {model['patients']} Synthea patients, whole raw bundles "
            f"({model['resources_min']:,} to {model['resources_max']:,} resources, {model['resources_total']:,} "
            f"in all, of which {model['read_total']:,} of the types the model reads); {model['scored']} of "
            f"{model['patients']} scored with an explanation. Each of {model['rounds']} rounds (after "
            f"{model['warm_up']} warm-up rounds) times one call with all patients, then one call per patient; "
            "the figures are per patient.",
            "",
            "| ms per patient | median | p95 |",
            "|:---|---:|---:|",
            f"| one `predict()` with all {model['patients']} patients | {model['batched_median_ms']:.2f} | "
            f"{model['batched_p95_ms']:.2f} |",
            f"| one `predict()` per patient | {model['single_median_ms']:.2f} | {model['single_p95_ms']:.2f} |",
            "",
            f"Inside the batched call (medians, ms per patient): feature extraction {stages['extract']:.2f}, "
            f"the ONNX model {stages['model']:.3f}, the explanation {stages['explain']:.2f}; the rest "
            f"(evidence and the sealed record) about "
            f"{max(model['batched_median_ms'] - sum(stages.values()), 0.0):.2f}.",
            "",
            f"**Batched {model['batched_median_ms']:.2f} ms per patient against {model['single_median_ms']:.2f} "
            f"one call per patient: {model['ratio']:.2f}x.**",
            "",
            "How to read it:",
            "",
            "- Batching saves only the per-call overhead of onnxruntime and the explainer (one session run and "
            "one TreeSHAP pass for the whole batch); feature extraction is per patient either way and, with a "
            f"model this small, is {stages['extract'] / model['batched_median_ms']:.0%} of the batched time. "
            "Both ways give the same probabilities (checked before timing).",
            "- Raw bundles, not de-identified copies: the cost of extraction depends on the number and kind of "
            "resources, which de-identification keeps; the dates differ, the work does not.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--repeat", type=int, default=500, help="timed extraction calls")
    parser.add_argument("--warm-up", type=int, default=20, help="untimed calls first")
    parser.add_argument(
        "--rounds", type=int, default=40, help="timed rounds of the model (batched, then single)"
    )
    parser.add_argument("--markdown", type=Path, default=None, help="write the section into this file")
    parser.add_argument("--json", type=Path, default=None, help="write the raw figures here")
    args = parser.parse_args(argv)

    pinning = pin_one_core()
    feature_set, feature_source = feature_set_load()
    patients = synthea_patients(args.data_dir)
    context, bundle_resources = patient_context(patients)
    vector = features_extract(feature_set, context)
    timings = measure(feature_set, context, repeat=args.repeat, warm_up=args.warm_up)
    command = "python benchmarks/feature_extraction.py" + "".join(
        f" {flag}" for flag in (argv if argv is not None else sys.argv[1:])
    )
    if os.environ.get("OMP_NUM_THREADS"):
        command = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} {command}"
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "machine": machine(),
        "onnxruntime": version("onnxruntime"),
        "pinning": pinning,
        "resources": len(context.resources),
        "bundle_resources": bundle_resources,
        "types": Counter(s.resource_type for s in context.resources).most_common(6),
        "features": len(feature_set),
        "feature_source": feature_source,
        "aggregates": Counter(f.aggregate or f.source for f in feature_set.features).most_common(),
        "statuses": Counter(v.status for v in vector.values).most_common(),
        "repeat": args.repeat,
        "warm_up": args.warm_up,
        "median_ms": statistics.median(timings),
        "p95_ms": percentile(timings, 0.95),
        "max_ms": max(timings),
    }
    if MANIFEST.is_file():
        model = model_build(manifest_load(MANIFEST), device="cpu")
        if not isinstance(model, DeclarativeTabularModel):
            raise SystemExit(f"{MANIFEST}: expected a declarative tabular model, got {type(model).__name__}")
        results["model"] = model_measure(
            model, patients, rounds=args.rounds, warm_up=max(args.warm_up // 10, 1)
        )
    section = render(results)
    print(section)
    print(f"\nvalue statuses of the patient: {dict(results['statuses'])}")
    if args.markdown:
        write_between_markers(args.markdown, BEGIN, END, section, heading=HEADING)
        print(f"wrote the section {HEADING[3:]!r} of {args.markdown}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
