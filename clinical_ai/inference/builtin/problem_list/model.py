"""The problem-list-gaps model: conditions the notes assert that the coded problem list lacks.

For each patient: read the notes, split them into sentences, find the concepts each sentence names (lexical
hits, and encoder spans whose cosine with a concept reaches ``thresholds.similarity``), classify each mention
(affirmed, negated, historical, family, hypothetical, plan), and propose every concept with at least one
affirmed mention that is not already present. Present means: a Condition of the patient carries the concept's
code, or its code text / display names one of the concept's terms, or has a cosine with one of them of at least
``thresholds.present_similarity`` (kept high: sibling concepts such as two lacerations reach 0.8). A
Condition counts whatever its clinical status (resolved and inactive ones too: the gap is about a missing
code, and re-activating a resolved problem is a different suggestion); only ``entered-in-error`` ones are
ignored. All spans and condition texts of all patients of a ``predict`` call are encoded in one
``encode`` call (distinct texts once, sorted by length to pad little); concept embeddings are computed once,
when the model is built.

The model never logs: its inputs are de-identified notes, and a sentence is still clinical text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, cast

import torch

from clinical_ai.inference.builtin.problem_list.findings import finding_build
from clinical_ai.inference.builtin.problem_list.matching import Mention, SentenceReading, sentence_read
from clinical_ai.inference.builtin.problem_list.notes import ENTERED_IN_ERROR, NotesRead, notes_read
from clinical_ai.inference.builtin.problem_list.text import Sentence, sentences_split
from clinical_ai.inference.builtin.problem_list.vocabulary import Vocabulary, strip_semantic_tag
from clinical_ai.inference.engine.manifest import ManifestError, ModelManifest
from clinical_ai.inference.engine.types import ModelResult, PatientContext

MODEL_ID = "problem-list-gaps"
NO_NOTES = "no clinical notes"
SKIPPED_SECTIONS = frozenset({"allergies", "medications", "immunizations"})

Matching = Literal["lexical+embedding", "lexical", "embedding"]
MATCHINGS: tuple[Matching, ...] = ("lexical+embedding", "lexical", "embedding")


class Encoder(Protocol):
    """What ``runners.transformers.SentenceEncoder`` offers: unit rows, batched."""

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None) -> torch.Tensor: ...


@dataclass(frozen=True)
class Settings:
    similarity: float  # an encoder span names the concept from this cosine up
    present_similarity: float | None = None  # a Condition's text is the concept from here; None: similarity
    batch_size: int = 32
    max_evidence_sentences: int = 3
    assertion_window: int = 24  # tokens between a trigger and the mention
    max_span_tokens: int = 10
    matching: Matching = "lexical+embedding"

    @property
    def present_threshold(self) -> float:
        return self.similarity if self.present_similarity is None else self.present_similarity

    @property
    def lexical(self) -> bool:
        return self.matching != "embedding"

    @property
    def embedding(self) -> bool:
        return self.matching != "lexical"


def _number(mapping: Mapping[str, Any], key: str, default: float | None, where: str) -> float | None:
    value = mapping.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ManifestError(f"{where}: '{key}' must be a number")
    return float(value)


def settings_from_manifest(manifest: ModelManifest) -> Settings:
    where = f"{manifest.id} {manifest.version}"
    similarity = _number(manifest.thresholds, "similarity", None, where)
    if similarity is None or not 0 < similarity <= 1:
        raise ManifestError(f"{where}: thresholds.similarity must be a cosine in (0, 1]")
    present = _number(manifest.thresholds, "present_similarity", None, where)
    if present is not None and not 0 < present <= 1:
        raise ManifestError(f"{where}: thresholds.present_similarity must be a cosine in (0, 1]")
    parameters = manifest.parameters
    matching = parameters.get("matching", "lexical+embedding")
    if matching not in MATCHINGS:
        raise ManifestError(f"{where}: parameters.matching must be one of {', '.join(MATCHINGS)}")
    integers = {}
    for key, default in (
        ("batch_size", 32),
        ("max_evidence_sentences", 3),
        ("assertion_window_tokens", 24),
        ("max_span_tokens", 10),
    ):
        value = parameters.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ManifestError(f"{where}: parameters.{key} must be a positive integer")
        integers[key] = value
    return Settings(
        similarity=similarity,
        present_similarity=present,
        batch_size=integers["batch_size"],
        max_evidence_sentences=integers["max_evidence_sentences"],
        assertion_window=integers["assertion_window_tokens"],
        max_span_tokens=integers["max_span_tokens"],
        matching=cast(Matching, matching),
    )


@dataclass(frozen=True)
class _Pending:
    """An affirmed span waiting for its similarity."""

    sentence: Sentence
    highlight: tuple[int, int]
    key: str


@dataclass
class _Patient:
    context: PatientContext
    read: NotesRead
    sentence_count: int = 0
    mentions: list[Mention] = field(default_factory=list)
    pending: list[_Pending] = field(default_factory=list)
    condition_count: int = 0
    present: set[int] = field(default_factory=set)  # concepts present by code or by name
    condition_keys: set[str] = field(default_factory=set)  # condition texts to compare by embedding


def _condition_texts(resource: Mapping[str, Any]) -> list[str]:
    code = resource.get("code") or {}
    texts = [code.get("text"), *((c or {}).get("display") for c in code.get("coding") or [])]
    return [
        " ".join(strip_semantic_tag(t).lower().split()) for t in texts if isinstance(t, str) and t.strip()
    ]


def _condition_codes(resource: Mapping[str, Any]) -> set[tuple[str, str]]:
    codings = (resource.get("code") or {}).get("coding") or []
    return {(str(c.get("system", "")), str(c.get("code", ""))) for c in codings if isinstance(c, Mapping)}


def _entered_in_error(resource: Mapping[str, Any]) -> bool:
    codings = (resource.get("verificationStatus") or {}).get("coding") or []
    return any(isinstance(c, Mapping) and c.get("code") == ENTERED_IN_ERROR for c in codings)


class ProblemListModel:
    """``predict`` as ``ClinicalModel`` asks; ``configured`` gives a copy with other settings that shares the
    concept embeddings (the evaluation's threshold sweep)."""

    def __init__(
        self,
        *,
        encoder: Encoder | None,
        vocabulary: Vocabulary,
        settings: Settings,
        model_id: str = MODEL_ID,
        model_version: str = "1.0.0",
        term_vectors: torch.Tensor | None = None,
    ) -> None:
        if settings.embedding and encoder is None:
            raise ManifestError(f"{model_id}: embedding matching needs a sentence encoder")
        self.encoder = encoder
        self.vocabulary = vocabulary
        self.settings = settings
        self.model_id = model_id
        self.model_version = model_version
        self._term_concepts = torch.tensor([concept for _, concept in vocabulary.terms], dtype=torch.long)
        if term_vectors is None and encoder is not None and settings.embedding:
            term_vectors = self._encode([term.lower() for term, _ in vocabulary.terms])
        self.term_vectors = term_vectors

    def configured(self, *, encoder: Encoder | None = None, **changes: Any) -> ProblemListModel:
        """A copy with other settings (and, if given, another encoder) sharing the concept embeddings."""
        return ProblemListModel(
            encoder=encoder or self.encoder,
            vocabulary=self.vocabulary,
            settings=replace(self.settings, **changes),
            model_id=self.model_id,
            model_version=self.model_version,
            term_vectors=self.term_vectors,
        )

    # --- encoding --------------------------------------------------------------------------------------

    def _encode(self, texts: Sequence[str]) -> torch.Tensor:
        """One ``encode`` call for all texts, shortest first (batches of like lengths pad little)."""
        assert self.encoder is not None
        order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
        vectors = self.encoder.encode([texts[i] for i in order], batch_size=self.settings.batch_size)
        result = torch.empty_like(vectors)
        result[torch.tensor(order, dtype=torch.long)] = vectors
        return result

    def _concept_similarities(self, texts: Sequence[str]) -> torch.Tensor:
        """(len(texts), concepts): each text's best cosine with any term of each concept."""
        if not texts or self.term_vectors is None:
            return torch.zeros((len(texts), len(self.vocabulary)))
        by_term = self._encode(texts).float() @ self.term_vectors.float().T
        index = self._term_concepts.unsqueeze(0).expand(len(texts), -1)
        best = torch.full((len(texts), len(self.vocabulary)), -1.0)
        return best.scatter_reduce(1, index, by_term, reduce="amax", include_self=True)

    # --- per patient -----------------------------------------------------------------------------------

    def _reading(self, sentence: Sentence, memo: dict[tuple[str, str], SentenceReading]) -> SentenceReading:
        key = (sentence.text, sentence.section)
        reading = memo.get(key)
        if reading is None:
            reading = memo[key] = sentence_read(
                sentence.text,
                sentence.section,
                vocabulary=self.vocabulary,
                lexical=self.settings.lexical,
                embedding=self.settings.embedding,
                window=self.settings.assertion_window,
                max_span_tokens=self.settings.max_span_tokens,
            )
        return reading

    def _prepare(self, context: PatientContext, memo: dict[tuple[str, str], SentenceReading]) -> _Patient:
        patient = _Patient(context, notes_read(context))
        for note in patient.read.notes:
            for sentence in sentences_split(note):
                if sentence.section in SKIPPED_SECTIONS:
                    continue
                patient.sentence_count += 1
                reading = self._reading(sentence, memo)
                for index, highlight, assertion in reading.lexical:
                    patient.mentions.append(Mention(index, sentence, highlight, "lexical", 1.0, assertion))
                patient.pending.extend(_Pending(sentence, highlight, key) for highlight, key in reading.spans)
        for source in context.of_type("Condition"):
            if _entered_in_error(source.resource):
                continue
            patient.condition_count += 1
            for system_code in _condition_codes(source.resource):
                if system_code in self.vocabulary.index:
                    patient.present.add(self.vocabulary.index[system_code])
            for text in _condition_texts(source.resource):
                if self.settings.lexical:
                    patient.present |= self.vocabulary.concepts_named_in(text)
                if self.settings.embedding:
                    patient.condition_keys.add(text)
        return patient

    # --- the answer ------------------------------------------------------------------------------------

    def predict(self, contexts: Sequence[PatientContext]) -> list[ModelResult]:
        memo: dict[tuple[str, str], SentenceReading] = {}
        patients = [self._prepare(context, memo) for context in contexts]
        keys = sorted(
            {p.key for patient in patients for p in patient.pending}
            | {key for patient in patients for key in patient.condition_keys}
        )
        similarities = self._concept_similarities(keys)
        row = {key: i for i, key in enumerate(keys)}
        results = []
        for patient in patients:
            for pending in patient.pending:
                best_value, best_concept = similarities[row[pending.key]].max(dim=0)
                if float(best_value) >= self.settings.similarity:
                    patient.mentions.append(
                        Mention(
                            int(best_concept),
                            pending.sentence,
                            pending.highlight,
                            "embedding",
                            float(best_value),
                            "affirmed",
                        )
                    )
            for key in patient.condition_keys:
                close = similarities[row[key]] >= self.settings.present_threshold
                patient.present |= {int(i) for i in torch.nonzero(close).flatten()}
            results.append(self._result(patient))
        return results

    def _result(self, patient: _Patient) -> ModelResult:
        by_concept: dict[int, list[Mention]] = {}
        for mention in patient.mentions:
            by_concept.setdefault(mention.concept, []).append(mention)
        findings = [
            finding_build(
                self.vocabulary.concepts[concept],
                mentions,
                threshold=self.settings.similarity,
                matching=self.settings.matching,
                max_excerpts=self.settings.max_evidence_sentences,
                model_id=self.model_id,
                model_version=self.model_version,
            )
            for concept, mentions in by_concept.items()
            if concept not in patient.present and any(m.assertion == "affirmed" for m in mentions)
        ]
        findings.sort(key=lambda f: (-(f.score or 0.0), f.key))
        read = patient.read
        messages = []
        if not read.notes:
            messages.append(NO_NOTES)
        if read.duplicates:
            messages.append(f"{read.duplicates} duplicate note text(s) read once")
        if read.unreadable:
            messages.append(f"{read.unreadable} text attachment(s) not read (not inline UTF-8 text)")
        features = {
            "note_count": len(read.notes),
            "sentence_count": patient.sentence_count,
            "note_chars": sum(len(note.text) for note in read.notes),
            "condition_count": patient.condition_count,
            "proposal_count": len(findings),
        }
        return ModelResult(patient.context.patient_pseudonym, tuple(findings), features, tuple(messages))
