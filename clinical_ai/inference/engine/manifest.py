"""Model manifests: what a model is, what it needs, and the files it is made of (verified by sha256).

A manifest is a JSON file. Built-in ones live under ``fixtures/models/``; a hospital adds its own by dropping
a manifest and its weights into a folder named in ``CLINICAL_AI_MODEL_DIRS``. See docs/models.md.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from clinical_ai.inference.engine.features.spec import FeatureSpecError, feature_set_parse, window_parse
from clinical_ai.inference.engine.features.types import FeatureSet
from clinical_ai.inference.engine.types import ClinicalModel

KINDS = ("rules", "transformers", "torchscript", "onnx", "torch_export", "text_classifier")
# Kinds a hospital declares with a manifest alone: features (or notes) from FHIR, a model file, explanations.
DECLARATIVE_KINDS = ("onnx", "torch_export", "text_classifier")
DECLARATIVE_ENTRYPOINT = "clinical_ai.inference.builtin.declarative:build"
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ENTRYPOINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
PACKAGE_PREFIX = "package:"
# The card's summary in plain words, shown to clinicians beside every suggestion: two to four sentences.
CLINICAL_SUMMARY_MAX = 700
CARD_SECTIONS = (
    "clinical_summary",
    "intended_use",
    "intended_users",
    "development",
    "validation",
    "limitations",
)
# What a declarative model's card must add: how its per-patient explanations are computed, and their limits.
DECLARATIVE_CARD_SECTIONS = ("explanation_method",)


class ManifestError(ValueError):
    """The manifest is malformed or names something that does not exist."""


class ArtifactMismatch(ManifestError):
    """An artifact's sha256 differs from the manifest's: the model refuses to load."""


@dataclass(frozen=True)
class Artifact:
    name: str
    path: str  # relative to the manifest's folder, or "package:<module>/<path inside the package>"
    sha256: str


@dataclass(frozen=True)
class ModelInput:
    name: str
    resource_type: str
    codes: tuple[str, ...]  # "system|code"
    required: bool
    description: str


@dataclass(frozen=True)
class TextInput:
    """Which notes a text classifier reads: DocumentReference/DiagnosticReport text attachments, optionally of
    ``codes`` (the resource's type/code), dated inside ``lookback`` before the prediction time; the newest
    one (``select`` "latest") or all of them joined, newest first (``select`` "all"), cut at ``max_chars``."""

    resource_types: tuple[str, ...]
    codes: frozenset[str]
    lookback: timedelta | None
    select: str
    max_chars: int


@dataclass(frozen=True)
class ModelManifest:
    id: str
    version: str
    name: str
    kind: str
    entrypoint: str
    artifacts: tuple[Artifact, ...]
    inputs: tuple[ModelInput, ...]
    outputs: Mapping[str, Any]
    thresholds: Mapping[str, Any]
    parameters: Mapping[str, Any]
    card: Mapping[str, Any]
    default_enabled: bool
    source: Path  # the manifest file
    sha256: str  # of the manifest file itself: a run records exactly what it ran
    features: FeatureSet | None = None  # declarative kinds onnx and torch_export: the model's input row
    explanation: Mapping[str, Any] = field(default_factory=dict)  # {"background": <artifact name>}
    text: TextInput | None = None  # kind text_classifier: which notes the classifier reads

    @property
    def version_key(self) -> tuple[int, int, int]:
        major, minor, patch = (int(p) for p in self.version.split("."))
        return (major, minor, patch)

    @property
    def resource_types(self) -> frozenset[str]:
        """The resource types the model reads: its inputs', its features' or notes', and Patient. The
        service loads these only, and a declarative model takes its prediction time from them, so the
        same patient gives the same result in service and offline."""
        types = {item.resource_type for item in self.inputs} | {"Patient"}
        if self.features is not None:
            types |= self.features.resource_types
        if self.text is not None:
            types |= set(self.text.resource_types)
        return frozenset(types)

    def artifact_path(self, name: str) -> Path:
        for artifact in self.artifacts:
            if artifact.name == name:
                return resolve_artifact_path(artifact, base=self.source.parent)
        raise KeyError(name)


@dataclass(frozen=True)
class ModelSpec:
    """What a manifest's entrypoint receives: the manifest, its verified artifact paths, the torch device,
    and what the runner loaded for the model's kind (a sentence encoder, a TorchScript module)."""

    manifest: ModelManifest
    artifacts: Mapping[str, Path]
    device: str = "cpu"
    encoder: Any = None  # runners.transformers.SentenceEncoder for kind "transformers"
    module: Any = None  # torch.jit.ScriptModule for kind "torchscript"
    extras: Mapping[str, Any] = field(default_factory=dict)


def _require(data: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind):
        raise ManifestError(f"{where}: '{key}' must be a {kind.__name__}")
    return value


def _codes(values: Any, where: str) -> tuple[str, ...]:
    if not isinstance(values, list) or not all(isinstance(v, str) and "|" in v for v in values):
        raise ManifestError(f"{where}: 'codes' must be a list of 'system|code' strings")
    return tuple(values)


def manifest_parse(data: Any, *, source: Path, sha256: str = "") -> ModelManifest:
    """Validate a manifest document (already parsed from JSON)."""
    if not isinstance(data, dict):
        raise ManifestError(f"{source}: a manifest is a JSON object")
    where = str(source)
    model_id = _require(data, "id", str, where)
    if not _ID.match(model_id):
        raise ManifestError(f"{where}: 'id' must be lower-case letters, digits and '-'")
    version = _require(data, "version", str, where)
    if not _VERSION.match(version):
        raise ManifestError(f"{where}: 'version' must be MAJOR.MINOR.PATCH")
    kind = _require(data, "kind", str, where)
    if kind not in KINDS:
        raise ManifestError(f"{where}: 'kind' must be one of {', '.join(KINDS)}")
    if kind in DECLARATIVE_KINDS and "entrypoint" not in data:
        data = {**data, "entrypoint": DECLARATIVE_ENTRYPOINT}
    entrypoint = _require(data, "entrypoint", str, where)
    if not _ENTRYPOINT.match(entrypoint):
        raise ManifestError(f"{where}: 'entrypoint' must be 'package.module:callable'")
    artifacts = []
    for i, item in enumerate(_require(data, "artifacts", list, where)):
        at = f"{where}: artifacts[{i}]"
        if not isinstance(item, dict):
            raise ManifestError(f"{at} must be an object")
        digest = _require(item, "sha256", str, at).lower()
        if not _SHA256.match(digest):
            raise ManifestError(f"{at}: 'sha256' must be 64 hex digits")
        artifacts.append(Artifact(_require(item, "name", str, at), _require(item, "path", str, at), digest))
    if len({a.name for a in artifacts}) != len(artifacts):
        raise ManifestError(f"{where}: artifact names must be unique")
    inputs = []
    if kind in DECLARATIVE_KINDS and "inputs" not in data:
        data = {**data, "inputs": []}  # a declarative model's inputs are its features (or notes)
    for i, item in enumerate(_require(data, "inputs", list, where)):
        at = f"{where}: inputs[{i}]"
        if not isinstance(item, dict):
            raise ManifestError(f"{at} must be an object")
        inputs.append(
            ModelInput(
                name=_require(item, "name", str, at),
                resource_type=_require(item, "resourceType", str, at),
                codes=_codes(item.get("codes", []), at),
                required=bool(item.get("required", False)),
                description=str(item.get("description", "")),
            )
        )
    card = _require(data, "card", dict, where)
    for section in CARD_SECTIONS:
        if section not in card:
            raise ManifestError(f"{where}: the model card lacks '{section}'")
    summary = card["clinical_summary"]
    if not isinstance(summary, str) or not summary.strip() or len(summary) > CLINICAL_SUMMARY_MAX:
        raise ManifestError(
            f"{where}: the model card's 'clinical_summary' must be plain text of 1 to {CLINICAL_SUMMARY_MAX} "
            "characters (what the model does, for whom, its main limitation, when not to rely on it)"
        )
    features, explanation, text = _declarative_parts(data, kind=kind, source=source, artifacts=artifacts)
    return ModelManifest(
        id=model_id,
        version=version,
        name=_require(data, "name", str, where),
        kind=kind,
        entrypoint=entrypoint,
        artifacts=tuple(artifacts),
        inputs=tuple(inputs),
        outputs=dict(data.get("outputs") or {}),
        thresholds=dict(data.get("thresholds") or {}),
        parameters=dict(data.get("parameters") or {}),
        card=card,
        default_enabled=bool(data.get("default_enabled", False)),
        source=source,
        sha256=sha256,
        features=features,
        explanation=explanation,
        text=text,
    )


def _declarative_parts(
    data: Mapping[str, Any], *, kind: str, source: Path, artifacts: list[Artifact]
) -> tuple[FeatureSet | None, dict[str, Any], TextInput | None]:
    """The features, explanation and notes sections: checked here, at load, so a bad one refuses the model
    before any patient is scored."""
    where = str(source)
    names = {a.name for a in artifacts}
    if kind not in DECLARATIVE_KINDS:
        if "features" in data:
            raise ManifestError(f"{where}: 'features' is for the kinds {', '.join(DECLARATIVE_KINDS[:2])}")
        return None, {}, None
    card = data["card"]
    for section in DECLARATIVE_CARD_SECTIONS:
        if not isinstance(card.get(section), str) or not card[section].strip():
            raise ManifestError(
                f"{where}: the model card lacks '{section}': how each result's explanation is computed, "
                "and its limits"
            )
    required_artifact = "weights" if kind == "text_classifier" else "model"
    if required_artifact not in names:
        raise ManifestError(f"{where}: a {kind} model needs an artifact named '{required_artifact}'")
    explanation = data.get("explanation") or {}
    if not isinstance(explanation, dict):
        raise ManifestError(f"{where}: 'explanation' must be an object")
    background = explanation.get("background")
    if background is not None and background not in names:
        raise ManifestError(f"{where}: explanation.background names no artifact ({background!r})")
    if kind == "text_classifier":
        if "features" in data:
            raise ManifestError(f"{where}: a text_classifier reads notes ('text'), not 'features'")
        return None, dict(explanation), _text_input(data.get("text"), where=where)
    extra = data.get("code_systems") or []
    if not isinstance(extra, list) or not all(isinstance(uri, str) and uri for uri in extra):
        raise ManifestError(f"{where}: 'code_systems' must be a list of code system URIs")
    try:
        features = feature_set_parse(
            data.get("features"), base=source.parent, where=where, extra_code_systems=extra
        )
    except FeatureSpecError as exc:
        raise ManifestError(f"{where}: {exc}") from exc
    if not len(features):
        raise ManifestError(f"{where}: a {kind} model needs at least one feature")
    return features, dict(explanation), None


def _text_input(section: Any, *, where: str) -> TextInput:
    at = f"{where}: text"
    if not isinstance(section, dict):
        raise ManifestError(f"{at} must say which notes the classifier reads")
    types = section.get("resourceTypes", ["DocumentReference", "DiagnosticReport"])
    allowed = {"DocumentReference", "DiagnosticReport"}
    if not isinstance(types, list) or not types or not set(types) <= allowed:
        raise ManifestError(f"{at}: 'resourceTypes' must list DocumentReference and/or DiagnosticReport")
    codes = _codes(section.get("codes", []), at)
    window = section.get("window")
    try:
        lookback = None if window is None else window_parse(window)
    except ValueError as exc:
        raise ManifestError(f"{at}: {exc}") from exc
    select = section.get("select", "latest")
    if select not in ("latest", "all"):
        raise ManifestError(f"{at}: 'select' must be 'latest' or 'all'")
    max_chars = section.get("max_chars", 20000)
    if not isinstance(max_chars, int) or not 100 <= max_chars <= 200000:
        raise ManifestError(f"{at}: 'max_chars' must be a whole number from 100 to 200000")
    return TextInput(
        resource_types=tuple(types),
        codes=frozenset(codes),
        lookback=lookback,
        select=str(select),
        max_chars=max_chars,
    )


def manifest_load(path: Path) -> ModelManifest:
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc})") from exc
    return manifest_parse(data, source=path, sha256=hashlib.sha256(raw).hexdigest())


def resolve_artifact_path(artifact: Artifact, *, base: Path) -> Path:
    if artifact.path.startswith(PACKAGE_PREFIX):
        module, _, inner = artifact.path[len(PACKAGE_PREFIX) :].partition("/")
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise ManifestError(f"artifact {artifact.name}: package {module!r} is not installed")
        return Path(next(iter(spec.submodule_search_locations))) / inner
    path = Path(artifact.path)
    return path if path.is_absolute() else (base / path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artifacts_verify(manifest: ModelManifest) -> dict[str, Path]:
    """Resolve and hash every artifact; any missing file or differing digest refuses the model."""
    verified: dict[str, Path] = {}
    for artifact in manifest.artifacts:
        path = resolve_artifact_path(artifact, base=manifest.source.parent)
        if not path.is_file():
            raise ManifestError(
                f"{manifest.id} {manifest.version}: artifact {artifact.name} not found at {path}"
            )
        actual = file_sha256(path)
        if actual != artifact.sha256:
            raise ArtifactMismatch(
                f"{manifest.id} {manifest.version}: artifact {artifact.name} has sha256 {actual[:12]}…, "
                f"the manifest says {artifact.sha256[:12]}…; refusing to load"
            )
        verified[artifact.name] = path
    return verified


def entrypoint_resolve(manifest: ModelManifest) -> Callable[[ModelSpec], ClinicalModel]:
    module_name, _, attribute = manifest.entrypoint.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ManifestError(f"{manifest.id}: entrypoint module {module_name!r} cannot be imported") from exc
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ManifestError(f"{manifest.id}: entrypoint {manifest.entrypoint!r} is not callable")
    return cast(Callable[[ModelSpec], ClinicalModel], factory)
