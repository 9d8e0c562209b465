"""Phase 2 of the inference benchmark: the inference stage alone, in-process and without a database; each
built-in model batched over all patients against one patient at a time, with the same findings required."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from _inference_process import cores_pin, django_setup


class CountingEncoder:
    """Forwards to the model's sentence encoder, counting the texts and the forward passes."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.texts = 0
        self.passes = 0

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None) -> Any:
        size = batch_size or int(self.inner.batch_size)
        self.texts += len(texts)
        self.passes += math.ceil(len(texts) / size)
        return self.inner.encode(texts, batch_size=batch_size)


def _service_view(context: Any, manifest: Any) -> Any:
    """The patient as the worker reads it (``patient_context_load``): the types the model declares and
    Patient, newest first (here: last in the bundle first), identical copies once, at most the configured cap."""
    from django.conf import settings

    from clinical_ai.core.sealing import canonical_json
    from clinical_ai.inference.engine.types import PatientContext

    types = {item.resource_type for item in manifest.inputs} | {"Patient"}
    seen: set[bytes] = set()
    kept = []
    for source in reversed(context.resources):
        if source.resource_type not in types:
            continue
        key = canonical_json(source.resource)
        if key not in seen:
            seen.add(key)
            kept.append(source)
    return PatientContext(context.patient_pseudonym, tuple(kept[: settings.INFERENCE_MAX_INPUT_RESOURCES]))


def _findings(results: Sequence[Any]) -> list[dict[str, float | None]]:
    return [{f.key: f.score for f in result.findings} for result in results]


def phase_batching(bundles: Sequence[Path], *, repeat: int, cpus: Sequence[int]) -> dict[str, Any]:
    used = cores_pin(cpus)
    django_setup()
    import torch

    from clinical_ai.inference.management.offline import patient_contexts
    from clinical_ai.inference.registry import catalogue, inference_device, model_build

    patient_contexts(min(bundles, key=lambda p: p.stat().st_size), organization="warm-up")  # engines loaded
    started = time.perf_counter()
    contexts = [c for path in bundles for c in patient_contexts(path, organization="benchmark")]
    deid_s = time.perf_counter() - started
    device = inference_device()
    models: dict[str, Any] = {}
    for model_id in sorted(catalogue().models):
        manifest = catalogue().manifest(model_id)
        assert manifest is not None
        patients = [_service_view(c, manifest) for c in contexts]
        built_at = time.perf_counter()
        batched = model_build(manifest, device=device)
        load_s = time.perf_counter() - built_at
        unbatched = model_build(
            replace(manifest, parameters={**manifest.parameters, "batch_size": 1}), device=device
        )
        encoders: dict[str, CountingEncoder] = {}
        for label, model in (("batched", batched), ("unbatched", unbatched)):
            if getattr(model, "encoder", None) is not None:
                encoders[label] = CountingEncoder(model.encoder)  # type: ignore[attr-defined]
                model.encoder = encoders[label]  # type: ignore[attr-defined]
        batch_size = int(manifest.parameters.get("batch_size", 0)) or None
        batched.predict(patients[:1])  # warm-up: first-call allocations, caches
        unbatched.predict(patients[:1])
        timings: dict[str, list[float]] = {"batched": [], "unbatched": []}
        outputs: dict[str, list[Any]] = {}
        counted: dict[str, tuple[int, int]] = {}
        for _ in range(repeat):  # interleaved, so drift hits both alike
            for label in ("batched", "unbatched"):
                encoder = encoders.get(label)
                if encoder is not None:
                    encoder.texts = encoder.passes = 0
                clock = time.perf_counter()
                if label == "batched":
                    results = batched.predict(patients)
                else:
                    results = [result for patient in patients for result in unbatched.predict([patient])]
                timings[label].append(time.perf_counter() - clock)
                outputs[label] = results
                counted[label] = (encoder.texts, encoder.passes) if encoder else (0, 0)
        same_keys = [set(a) == set(b) for a, b in zip(*map(_findings, outputs.values()), strict=True)]
        score_gaps = [
            abs((a[key] or 0.0) - (b[key] or 0.0))
            for a, b in zip(*map(_findings, outputs.values()), strict=True)
            for key in set(a) & set(b)
        ]
        sentences = sum(int(r.features.get("sentence_count", 0)) for r in outputs["batched"])
        models[model_id] = {
            "version": manifest.version,
            "kind": manifest.kind,
            "patients": len(patients),
            "resources": sum(len(p.resources) for p in patients),
            "input_types": sorted({item.resource_type for item in manifest.inputs}),
            "embedding_batch": batch_size if manifest.kind == "transformers" else None,
            "load_s": load_s,
            "sentences": sentences,
            "findings": sum(len(r.findings) for r in outputs["batched"]),
            "identical": all(same_keys),
            "patients_differing": same_keys.count(False),
            "max_score_gap": max(score_gaps, default=0.0),
            **{
                label: {
                    "seconds": min(timings[label]),
                    "all_seconds": timings[label],
                    "encoder_texts": counted[label][0],
                    "encoder_passes": counted[label][1],
                }
                for label in ("batched", "unbatched")
            },
        }
    return {
        "cpus": used,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": device,
        "patients": len(contexts),
        "deid_s": deid_s,
        "models": models,
    }
