"""Problem-list gaps: conditions that a patient's de-identified notes assert and the coded problem list lacks,
each proposed as a provisional Condition with the sentences that assert it.

Modules: ``notes`` (text attachments of DocumentReference and DiagnosticReport), ``text`` (sentences,
sections, tokens), ``assertion`` (negated, historical, family, hypothetical, plan), ``vocabulary`` (the
concepts and the lexical matcher), ``matching`` (mentions and encoder spans), ``model`` (the model).
The manifest is ``fixtures/models/problem-list-gaps/manifest.json``; its evaluation
``clinical_ai.inference.evaluation.problem_list_eval``.
"""

from __future__ import annotations

from clinical_ai.inference.builtin.problem_list.model import (
    MODEL_ID,
    NO_NOTES,
    Encoder,
    ProblemListModel,
    Settings,
    settings_from_manifest,
)
from clinical_ai.inference.builtin.problem_list.vocabulary import Vocabulary, vocabulary_load
from clinical_ai.inference.engine.manifest import ManifestError, ModelSpec

__all__ = [
    "MODEL_ID",
    "NO_NOTES",
    "Encoder",
    "ProblemListModel",
    "Settings",
    "Vocabulary",
    "build",
    "settings_from_manifest",
    "vocabulary_load",
]


def build(spec: ModelSpec) -> ProblemListModel:
    """The manifest's entrypoint: the vocabulary artifact, the runner's sentence encoder, the manifest's
    thresholds and parameters. Concept embeddings are computed here, once."""
    if "vocabulary" not in spec.artifacts:
        raise ManifestError(f"{spec.manifest.id}: the manifest has no 'vocabulary' artifact")
    settings = settings_from_manifest(spec.manifest)
    if settings.embedding and spec.encoder is None:
        raise ManifestError(f"{spec.manifest.id}: needs a sentence encoder (kind 'transformers')")
    return ProblemListModel(
        encoder=spec.encoder,
        vocabulary=vocabulary_load(spec.artifacts["vocabulary"]),
        settings=settings,
        model_id=spec.manifest.id,
        model_version=spec.manifest.version,
    )
