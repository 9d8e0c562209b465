"""Declarative FHIR feature extraction: milliseconds per patient on one core.

A bring-your-own-model run computes its manifest's features for every patient of a batch before the model
sees a row, so extraction must stay small beside the model itself. This measures ``features_extract`` on a
500-resource patient: the Synthea patient of ``../shared/data`` with the most resources, its Patient resource and its newest
499 other resources (bundle order is chronological), with the feature set of the worked example
``fixtures/models/ed-visit-90d/manifest.json`` (a built-in realistic set of 15 when that file is absent).
Each call indexes the record afresh (nothing is remembered between calls), as for a new patient.

    python benchmarks/feature_extraction.py --markdown docs/benchmarks.md

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

from _bundles import DEFAULT_DATA, patient_bundles  # noqa: E402
from _harness import machine, percentile, write_between_markers  # noqa: E402

from clinical_ai.inference.engine.features.extract import features_extract  # noqa: E402
from clinical_ai.inference.engine.features.spec import feature_set_parse  # noqa: E402
from clinical_ai.inference.engine.features.types import FeatureSet  # noqa: E402
from clinical_ai.inference.engine.types import PatientContext, SourceResource  # noqa: E402

HEADING = "## Feature extraction (declarative FHIR features)"
BEGIN, END = "<!-- feature-extraction:start -->", "<!-- feature-extraction:end -->"
MANIFEST = ROOT / "fixtures" / "models" / "ed-visit-90d" / "manifest.json"
RESOURCES = 500
TARGET_MS = 50.0

LOINC = "http://loinc.org"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def _observation(name: str, label: str, code: str, aggregate: str, unit: str, **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "resourceType": "Observation",
        "codes": [f"{LOINC}|{code}"],
        "aggregate": aggregate,
        "unit": unit,
        "missing": {"impute": 0},
        **more,
    }


# Used when the worked example's manifest is absent: demographics, utilisation counts, vitals and labs.
FALLBACK_FEATURES: list[dict[str, Any]] = [
    {"name": "age", "label": "age", "source": "age", "missing": {"impute": 50}},
    {"name": "female", "label": "female sex", "source": "sex", "equals": "female", "missing": {"impute": 0}},
    {
        "name": "ed_visits_12m",
        "label": "emergency visits, last 12 months",
        "resourceType": "Encounter",
        "codes": [f"{ACT}|EMER"],
        "window": "P365D",
        "aggregate": "count",
    },
    {
        "name": "encounters_12m",
        "label": "visits of any kind, last 12 months",
        "resourceType": "Encounter",
        "window": "P365D",
        "aggregate": "count",
    },
    {
        "name": "days_since_emergency",
        "label": "days since the last emergency visit",
        "resourceType": "Encounter",
        "codes": [f"{ACT}|EMER"],
        "aggregate": "time_since",
        "missing": {"impute": 3650},
    },
    {
        "name": "conditions",
        "label": "conditions on record",
        "resourceType": "Condition",
        "aggregate": "count",
    },
    {
        "name": "prescriptions_90d",
        "label": "prescriptions written, last 90 days",
        "resourceType": "MedicationRequest",
        "window": "P90D",
        "aggregate": "count",
    },
    {
        "name": "procedures_12m",
        "label": "procedures, last 12 months",
        "resourceType": "Procedure",
        "window": "P365D",
        "aggregate": "count",
    },
    _observation(
        "sbp_mean_1y", "mean systolic pressure, last year", "8480-6", "mean", "mm[Hg]", window="P1Y"
    ),
    _observation("sbp_slope", "systolic pressure trend", "8480-6", "slope", "mm[Hg]"),
    _observation(
        "dbp_max_1y", "highest diastolic pressure, last year", "8462-4", "max", "mm[Hg]", window="P1Y"
    ),
    _observation("bmi", "body mass index, latest", "39156-5", "latest", "kg/m2"),
    _observation("weight", "body weight, latest", "29463-7", "latest", "kg"),
    _observation("glucose_max_1y", "highest glucose, last year", "2339-0", "max", "mg/dL", window="P1Y"),
    _observation("creatinine", "creatinine, latest", "38483-4", "latest", "umol/L"),
]


def feature_set_load() -> tuple[FeatureSet, str]:
    """The worked example's features when its manifest is there, else the built-in set."""
    if MANIFEST.is_file():
        data = json.loads(MANIFEST.read_text(encoding="utf-8"))
        features = feature_set_parse(
            data.get("features"),
            base=MANIFEST.parent,
            where=str(MANIFEST),
            extra_code_systems=data.get("code_systems") or (),
        )
        return features, str(MANIFEST.relative_to(ROOT))
    return feature_set_parse(FALLBACK_FEATURES, base=ROOT, where="benchmark"), "the benchmark's built-in set"


def patient_context(data_dir: Path) -> tuple[PatientContext, str, int]:
    """The patient bundle with the most resources, cut to ``RESOURCES`` resources: its Patient and the newest others."""
    bundles = patient_bundles(data_dir)
    if not bundles:
        raise SystemExit(f"no Synthea patient bundles under {data_dir}")
    documents = {
        path: json.loads(path.read_text(encoding="utf-8-sig")).get("entry") or [] for path in bundles
    }
    path, entries = max(documents.items(), key=lambda item: len(item[1]))
    sources = [
        SourceResource(entry.get("fullUrl") or entry["resource"]["id"], entry["resource"])
        for entry in entries
    ]
    patients = [s for s in sources if s.resource_type == "Patient"]
    others = [s for s in sources if s.resource_type != "Patient"]
    if len(patients) != 1 or len(sources) < RESOURCES:
        raise SystemExit(f"{path.name}: expected one patient and at least {RESOURCES} resources")
    chosen = tuple(patients + others[-(RESOURCES - 1) :])
    # The file name is the synthetic patient's name: the report says only how big the record was.
    return PatientContext("benchmark", chosen), path.name, len(sources)


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


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    types = ", ".join(f"{name} {count}" for name, count in results["types"])
    aggregates = ", ".join(f"{name} {count}" for name, count in results["aggregates"])
    verdict = "within" if results["p95_ms"] < TARGET_MS else "OVER"
    return "\n".join(
        [
            f"Measured {results['date']} with `{results['command']}`.",
            "",
            f"`features_extract` on one patient of {results['resources']} resources (most numerous: {types}), cut from the "
            f"Synthea bundle with the most resources ({results['bundle_resources']} resources: its Patient and the newest others), "
            f"with the {results['features']} features of {results['feature_source']} ({aggregates}). "
            f"One process, {results['pinning']}; {results['repeat']} timed calls after {results['warm_up']} "
            "warm-up calls; every call indexes the record afresh, as for a new patient.",
            "",
            "| per patient | median | p95 | max | target |",
            "|---|---:|---:|---:|---:|",
            f"| milliseconds | {results['median_ms']:.2f} | {results['p95_ms']:.2f} | {results['max_ms']:.2f} "
            f"| < {TARGET_MS:.0f} ({verdict}) |",
            "",
            f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, load average {m['load_average']}.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--repeat", type=int, default=500, help="timed calls")
    parser.add_argument("--warm-up", type=int, default=20, help="untimed calls first")
    parser.add_argument("--markdown", type=Path, default=None, help="write the section into this file")
    parser.add_argument("--json", type=Path, default=None, help="write the raw figures here")
    args = parser.parse_args(argv)

    pinning = pin_one_core()
    feature_set, feature_source = feature_set_load()
    context, _, bundle_resources = patient_context(args.data_dir)
    vector = features_extract(feature_set, context)
    timings = measure(feature_set, context, repeat=args.repeat, warm_up=args.warm_up)
    command = "python benchmarks/feature_extraction.py" + "".join(
        f" {flag}" for flag in (argv if argv is not None else sys.argv[1:])
    )
    results = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "machine": machine(),
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
