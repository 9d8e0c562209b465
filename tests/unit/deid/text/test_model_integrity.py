"""The spaCy model is hash-verified before spaCy reads it, loaded once per process, never downloaded."""

from __future__ import annotations

import copy
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from clinical_ai.deid.engine.text import nlp
from clinical_ai.deid.engine.text.model_manifest import MODEL_MANIFEST
from clinical_ai.deid.engine.text.nlp import ModelIntegrityError, compute_manifest, model_dir, verify_model


def tampered_manifest(**changes: Any) -> dict[str, Any]:
    manifest = copy.deepcopy(MODEL_MANIFEST)
    manifest.update(changes)
    return manifest


def test_pinned_manifest_matches_the_installed_model() -> None:
    verify_model(model_dir(), MODEL_MANIFEST)
    assert MODEL_MANIFEST["version"] == "3.8.0"
    assert {"config.cfg", "meta.json", "ner/model", "tok2vec/model", "vocab/strings.json"} <= set(
        MODEL_MANIFEST["files"]
    )


def test_a_changed_hash_in_the_manifest_is_refused() -> None:
    manifest = tampered_manifest()
    manifest["files"]["ner/model"] = "0" * 64
    with pytest.raises(ModelIntegrityError, match="changed ner/model"):
        verify_model(model_dir(), manifest)


def test_a_file_the_manifest_does_not_list_is_refused() -> None:
    manifest = tampered_manifest()
    del manifest["files"]["tagger/model"]
    with pytest.raises(ModelIntegrityError, match="unexpected tagger/model"):
        verify_model(model_dir(), manifest)


def test_another_version_is_refused() -> None:
    with pytest.raises(ModelIntegrityError, match="version"):
        verify_model(model_dir(), tampered_manifest(version="3.7.1"))
    with pytest.raises(ModelIntegrityError, match="pinned"):
        verify_model(model_dir(), tampered_manifest(name="core_web_lg"))


def test_an_empty_manifest_is_refused() -> None:
    with pytest.raises(ModelIntegrityError):
        verify_model(model_dir(), tampered_manifest(files={}))


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(model_dir(), target)
    return target


def test_a_tampered_weight_file_is_refused(model_copy: Path) -> None:
    verify_model(model_copy, MODEL_MANIFEST)
    with (model_copy / "ner" / "model").open("ab") as weights:
        weights.write(b"\0")
    with pytest.raises(ModelIntegrityError, match="changed ner/model"):
        verify_model(model_copy, MODEL_MANIFEST)


def test_a_missing_or_added_file_is_refused(model_copy: Path) -> None:
    (model_copy / "vocab" / "vectors").unlink()
    (model_copy / "ner" / "extra.bin").write_bytes(b"x")
    with pytest.raises(ModelIntegrityError, match=r"missing vocab/vectors.*unexpected ner/extra.bin"):
        verify_model(model_copy, MODEL_MANIFEST)


def test_compute_manifest_is_what_the_pinned_one_was_generated_with(model_copy: Path) -> None:
    assert compute_manifest(model_copy) == MODEL_MANIFEST


def test_a_refused_model_is_never_handed_to_spacy(monkeypatch: pytest.MonkeyPatch) -> None:
    import spacy

    def must_not_load(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("spacy.load called on an unverified model")

    monkeypatch.setattr(spacy, "load", must_not_load)
    manifest = tampered_manifest()
    manifest["files"]["config.cfg"] = "f" * 64
    with pytest.raises(ModelIntegrityError):
        nlp.load_verified_pipeline(manifest=manifest)


def test_the_pipeline_and_analyzer_load_once_per_process(analyzer: Any) -> None:
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(nlp.get_pipeline())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(pipeline is nlp.get_pipeline() for pipeline in seen)
    assert nlp.get_analyzer() is analyzer
    engine = analyzer.nlp_engine
    assert isinstance(engine, nlp.VerifiedSpacyNlpEngine)
    assert engine.pipeline is nlp.get_pipeline()


def test_the_engine_never_loads_or_downloads(monkeypatch: pytest.MonkeyPatch, analyzer: Any) -> None:
    import spacy
    import spacy.cli

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("no loading or downloading from Presidio")

    monkeypatch.setattr(spacy, "load", forbidden)
    monkeypatch.setattr(spacy.cli, "download", forbidden)
    analyzer.nlp_engine.load()
    assert analyzer.nlp_engine.is_loaded()
    assert analyzer.analyze("Seen by Dr Okafor.", language="en")


def test_the_batched_engine_refuses_what_it_does_not_support(analyzer: Any) -> None:
    with pytest.raises(ValueError, match="English"):
        list(analyzer.nlp_engine.process_batch(["text"], "de"))
