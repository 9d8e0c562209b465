"""The model registry: manifests found on disk, the admins' switches, and models loaded once per process.

Manifests are read from ``settings.INFERENCE_MODEL_DIRS``; every file named ``manifest.json`` (or
``manifest-*.json`` for several versions side by side) under those folders declares one model version.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings

from clinical_ai.inference.engine.manifest import (
    DECLARATIVE_KINDS,
    ManifestError,
    ModelManifest,
    ModelSpec,
    artifacts_verify,
    entrypoint_resolve,
    manifest_load,
)
from clinical_ai.inference.engine.runners.base import RunnerError
from clinical_ai.inference.engine.types import ClinicalModel
from clinical_ai.inference.models import ModelDeployment

logger = logging.getLogger(__name__)
_load_lock = threading.Lock()


@dataclass(frozen=True)
class Catalogue:
    """Every model version found, by model id (newest version first), and the manifests that failed."""

    models: dict[str, list[ModelManifest]]
    errors: list[str]

    def versions(self, model_id: str) -> list[ModelManifest]:
        return self.models.get(model_id, [])

    def manifest(self, model_id: str, version: str = "") -> ModelManifest | None:
        for manifest in self.versions(model_id):
            if not version or manifest.version == version:
                return manifest
        return None


def catalogue_scan(folders: list[Path]) -> Catalogue:
    models: dict[str, list[ModelManifest]] = {}
    errors: list[str] = []
    seen: set[tuple[str, str]] = set()
    for folder in folders:
        if not folder.is_dir():
            if folder.exists():
                errors.append(f"{folder}: not a folder")
            continue
        for path in sorted([*folder.rglob("manifest.json"), *folder.rglob("manifest-*.json")]):
            try:
                manifest = manifest_load(path)
            except (ManifestError, OSError) as exc:
                errors.append(str(exc))
                continue
            if (manifest.id, manifest.version) in seen:
                errors.append(f"{path}: {manifest.id} {manifest.version} is declared twice; ignored")
                continue
            seen.add((manifest.id, manifest.version))
            models.setdefault(manifest.id, []).append(manifest)
    for versions in models.values():
        versions.sort(key=lambda m: m.version_key, reverse=True)
    return Catalogue(models=models, errors=errors)


@cache
def catalogue() -> Catalogue:
    """Scanned once per process: adding a manifest takes a worker restart, like any deployment."""
    found = catalogue_scan(list(settings.INFERENCE_MODEL_DIRS))
    for error in found.errors:
        logger.error("model manifest refused: %s", error)
    return found


@dataclass(frozen=True)
class DeploymentState:
    model_id: str
    enabled: bool
    manifest: ModelManifest | None  # the version that runs now (pinned, else the newest); None if unknown
    pinned_version: str


def deployment_state(
    model_id: str, *, row: ModelDeployment | None = None, lookup: bool = True
) -> DeploymentState:
    """Whether the model runs, and which version. Reads the switch row (pass ``row`` when already held)."""
    if row is None and lookup:
        row = ModelDeployment.objects.filter(model_id=model_id).first()
    newest = catalogue().manifest(model_id)
    if row is None:
        enabled = bool(newest and newest.default_enabled)
        return DeploymentState(model_id, enabled, newest, "")
    manifest = catalogue().manifest(model_id, row.pinned_version) if row.pinned_version else newest
    return DeploymentState(model_id, row.enabled and manifest is not None, manifest, row.pinned_version)


def enabled_models() -> list[DeploymentState]:
    rows = {row.model_id: row for row in ModelDeployment.objects.all()}
    states = [
        deployment_state(model_id, row=rows.get(model_id), lookup=False)
        for model_id in sorted(catalogue().models)
    ]
    return [state for state in states if state.enabled]


def inference_device() -> str:
    from clinical_ai.inference.engine.runners.transformers import best_device

    return settings.INFERENCE_DEVICE or best_device()


def model_build(manifest: ModelManifest, *, device: str) -> ClinicalModel:
    """Verify the artifacts and build the model for its kind. Raises ManifestError (ArtifactMismatch on a
    digest that differs): such a model never runs."""
    artifacts = artifacts_verify(manifest)
    factory = entrypoint_resolve(manifest)
    encoder = module = None
    if manifest.kind == "transformers":
        from clinical_ai.inference.engine.runners.transformers import SentenceEncoder

        if "weights" not in artifacts:
            raise ManifestError(f"{manifest.id}: a transformers model needs a 'weights' artifact")
        encoder = SentenceEncoder(
            artifacts["weights"].parent,
            device=device,
            batch_size=int(manifest.parameters.get("batch_size", 32)),
        )
    elif manifest.kind == "torchscript":
        import torch

        if "model" not in artifacts:
            raise ManifestError(f"{manifest.id}: a torchscript model needs a 'model' artifact")
        module = torch.jit.load(str(artifacts["model"]), map_location=device)  # type: ignore[no-untyped-call]
        module.eval()
    extras = (
        declarative_load(manifest, artifacts, device=device) if manifest.kind in DECLARATIVE_KINDS else {}
    )
    return factory(
        ModelSpec(manifest, artifacts, device=device, encoder=encoder, module=module, extras=extras)
    )


def pinned_folder_check(manifest: ModelManifest, folder: Path, artifacts: dict[str, Path]) -> None:
    """Every file of a checkpoint folder must be an artifact with its sha256: an unpinned tokenizer or
    config file could change what the model computes without changing any digest."""
    pinned = {path.resolve() for path in artifacts.values()}
    unpinned = sorted(
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and path.resolve() not in pinned
    )
    if unpinned:
        raise ManifestError(
            f"{manifest.id} {manifest.version}: files in the model folder without a sha256 in the manifest: "
            f"{', '.join(unpinned[:5])}; list each as an artifact"
        )


def declarative_load(manifest: ModelManifest, artifacts: dict[str, Path], *, device: str) -> dict[str, Any]:
    """Load a declarative model's file with its runner (ONNX Runtime, torch.export, transformers). A file
    that does not fit the manifest (inputs, outputs, width, labels) raises ManifestError. The runners are
    imported here, like torch above: the web process, which only lists models, never loads torch."""
    try:
        if manifest.kind == "onnx":
            from clinical_ai.inference.engine.runners.onnx import OnnxRunner

            assert manifest.features is not None
            runner: Any = OnnxRunner(
                artifacts["model"],
                n_features=len(manifest.features),
                output=manifest.parameters.get("output"),
                positive_index=int(manifest.parameters.get("positive_index", 1)),
                device=device,
            )
            return {"runner": runner}
        if manifest.kind == "torch_export":
            from clinical_ai.inference.engine.runners.torch_export import TorchExportRunner

            assert manifest.features is not None
            runner = TorchExportRunner(
                artifacts["model"],
                n_features=len(manifest.features),
                apply_sigmoid=bool(manifest.parameters.get("apply_sigmoid", False)),
                device=device,
            )
            return {"runner": runner}
        from clinical_ai.inference.engine.runners.sequence_classifier import SequenceClassifier

        folder = artifacts["weights"].parent
        pinned_folder_check(manifest, folder, artifacts)
        classifier = SequenceClassifier(
            folder,
            positive_label=str(manifest.parameters.get("positive_label", "")),
            device=device,
            max_length=int(manifest.parameters.get("max_length", 256)),
            batch_size=int(manifest.parameters.get("batch_size", 16)),
        )
        return {"classifier": classifier}
    except ManifestError:
        raise  # says what is wrong already, with the model's id
    except RunnerError as exc:
        raise ManifestError(f"{manifest.id} {manifest.version}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ManifestError(
            f"{manifest.id} {manifest.version}: parameters do not fit the model ({exc})"
        ) from exc


_checked: dict[tuple[str, str, str], str] = {}


def manifest_refusal(manifest: ModelManifest) -> str:
    """Why this found manifest would refuse to load ("" when it loads): artifacts hashed, the model file
    checked against the manifest. Checked once per process and manifest, so the models page can list
    models that parse but cannot run (a changed file, a graph with other inputs) beside malformed ones."""
    key = (manifest.id, manifest.version, manifest.sha256)
    if key not in _checked:
        try:
            if manifest.kind in ("onnx", "torch_export"):
                model_loaded(manifest)  # small files: the page checks the graph against the features too
            else:
                artifacts = artifacts_verify(manifest)
                if manifest.kind == "text_classifier":
                    pinned_folder_check(manifest, artifacts["weights"].parent, artifacts)
            _checked[key] = ""
        except (ManifestError, OSError) as exc:
            _checked[key] = str(exc)
    return _checked[key]


def catalogue_refusals() -> list[str]:
    """Every manifest that cannot run: malformed ones (refused at scan) and found ones that refuse to
    load. The other models are unaffected either way."""
    found = catalogue()
    refused = list(found.errors)
    for versions in found.models.values():
        refused.extend(reason for manifest in versions if (reason := manifest_refusal(manifest)))
    return refused


_loaded: dict[tuple[str, str, str], ClinicalModel] = {}


def model_loaded(manifest: ModelManifest) -> tuple[ClinicalModel, float]:
    """The model for this manifest, built on first use in this process and kept (never per task).
    Returns it with the seconds spent loading it now (0 when it was already loaded)."""
    key = (manifest.id, manifest.version, manifest.sha256)
    with _load_lock:
        model = _loaded.get(key)
        if model is not None:
            return model, 0.0
        started = time.perf_counter()
        model = model_build(manifest, device=inference_device())
        _loaded[key] = model
        logger.info("loaded model %s %s", manifest.id, manifest.version)
        return model, time.perf_counter() - started
