"""The scrubber end to end: identifiers gone, clinical content kept, stable tags, XHTML intact, batching."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from clinical_ai.deid.engine.text.scrubber import (
    Finding,
    PresidioTextScrubber,
    normalise_for_tag,
    resolve_overlaps,
)
from clinical_ai.deid.engine.text.xhtml import is_well_formed
from clinical_ai.deid.engine.types import PatientContext, PatientIdentifiers, TextItem, TextScrubber

from .conftest import KEY

TAG = r"\[PERSON-[0-9a-f]{6}\]"
SAMPLE_PHI = [
    "Margaret",
    "Okafor",
    "Lindqvist",
    "4471",
    "2290",
    "023 9261 4407",
    "9261 4408",
    "12 Harbour View Road",
    "Harbour View",
    "Portsmouth",
    "PO1 3AX",
    "1959",
    "20 Nov 2026",
]


class RecordingSink:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, str]] = []

    def record(self, *, kind: str, pseudonym: str, original: str) -> None:
        self.records.append((kind, pseudonym, original))


def scrub(scrubber: Any, text: str, patient: PatientContext | None, kind: str = "plain") -> str:
    (out,) = scrubber.scrub_texts([TextItem(text, kind)], patient=patient)  # type: ignore[arg-type]
    return str(out)


def test_it_is_a_text_scrubber(scrubber: Any) -> None:
    checked: TextScrubber = scrubber
    assert checked.scrub_texts([], patient=None) == []


def test_the_key_must_be_long_enough() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        PresidioTextScrubber(pseudonym_key=b"short")


def test_sample_note_loses_every_identifier_and_keeps_the_clinical_content(
    scrubber: Any, sample_note: str, sample_context: PatientContext
) -> None:
    out = scrub(scrubber, sample_note, sample_context)
    for phi in SAMPLE_PHI:
        assert phi.lower() not in out.lower(), (phi, out)
    assert out.startswith("Ward note 8 Nov 2026. ")  # 20 Nov 2026 shifted by -12 days, same format
    assert re.search(
        rf"{TAG} \(MRN \[MRN-[0-9a-f]{{6}}\]\), 67 years old, lives at \[ADDRESS\], \[LOCATION\]\.", out
    )
    for kept in (
        "67 years old",
        "Admitted with productive cough and fever for three days.",
        "History of type 2 diabetes mellitus and hypertension.",
        "On examination she is short of breath, crackles at the right base.",
        "Chest X-ray shows right lower lobe consolidation consistent with community acquired pneumonia.",
        "Daughter phone [PHONE].",
    ):
        assert kept in out


def test_clinical_paragraph_comes_back_unchanged_but_for_identifiers(
    scrubber: Any, sample_context: Any
) -> None:
    text = (
        "Admitted to ICU with sepsis and community acquired pneumonia. ECG: AF, EKG repeated, CT head normal, "
        "MRI pending. Background of COPD, CHF, type 2 diabetes mellitus, hypertension, Parkinson's disease, "
        "Alzheimer's and Crohn's disease. HbA1c 64 mmol/mol, BP 150/90, HR 110, SpO2 91%, NEWS2 score 7, "
        "Glasgow Coma Scale 14. Started metformin 500 mg, lisinopril 10 mg, amoxicillin, atorvastatin, "
        "insulin glargine and warfarin. Smoker since 2019, cough for three days. "
        "Reviewed by Dr Okafor, MRN 4471-2290."
    )
    out = scrub(scrubber, text, sample_context)
    expected = text.replace("Dr Okafor", "Dr [PERSON]").replace("4471-2290", "[MRN]")
    assert re.sub(r"\[(PERSON|MRN)-[0-9a-f]{6}\]", r"[\1]", out) == expected
    assert scrub(scrubber, text.split(" Reviewed")[0], None) == text.split(" Reviewed")[0]


def test_ages_over_89_are_aggregated_and_the_rest_kept(scrubber: Any) -> None:
    out = scrub(scrubber, "A 92 year old man and his 67 year old wife; aged 95.", None)
    assert out == "A [AGE>89] year old man and his 67 year old wife; aged [AGE>89]."


def test_dates_are_shifted_with_a_patient_and_removed_without(scrubber: Any, sample_context: Any) -> None:
    text = "Seen 14 March 2026 and on 03/20/2026; in 2019 for three days, yesterday."
    assert (
        scrub(scrubber, text, sample_context)
        == "Seen 2 March 2026 and on 03/08/2026; in 2019 for three days, yesterday."
    )
    assert scrub(scrubber, text, None) == "Seen [DATE] and on [DATE]; in 2019 for three days, yesterday."


def test_birth_date_is_shifted_in_whatever_format_it_is_written(scrubber: Any, sample_context: Any) -> None:
    out = scrub(scrubber, "DOB 14/03/1959, also written 03/14/1959 and 14 march 1959.", sample_context)
    assert out == "DOB 02/03/1959, also written 03/02/1959 and [DATE]."


def test_the_same_name_gets_the_same_tag_and_two_names_two_tags(scrubber: Any, sample_context: Any) -> None:
    first = scrub(scrubber, "Dr Helen Marsh reviewed. Plan by Dr Rupert Vance.", sample_context)
    second = scrub(scrubber, "Later Helen Marsh called; Dr Rupert Vance agreed.", sample_context)
    tags_first = re.findall(TAG, first)
    tags_second = re.findall(TAG, second)
    assert len(tags_first) == 2 and tags_first[0] != tags_first[1]
    assert tags_second == tags_first
    assert scrubber.scrub_texts([TextItem("Dr Helen Marsh reviewed.")], patient=sample_context) == [
        f"Dr {tags_first[0]} reviewed."
    ]


def test_all_forms_of_the_patients_name_share_one_tag(scrubber: Any, sample_context: Any) -> None:
    out = scrub(
        scrubber,
        "Margaret Okafor-Lindqvist; Mrs Okafor; M. Okafor; okafor, margaret; Lindqvist's.",
        sample_context,
    )
    tags = re.findall(TAG, out)
    assert len(tags) == 5 and len(set(tags)) == 1
    assert out == f"{tags[0]}; Mrs {tags[0]}; {tags[0]}; {tags[0]}; {tags[0]}'s."


def test_tags_depend_on_the_patient_and_the_key(scrubber: Any, sample_context: Any, analyzer: Any) -> None:
    text = "Seen by Dr Helen Marsh."
    tag = re.findall(TAG, scrub(scrubber, text, sample_context))
    other_patient = replace(sample_context, pseudonym="another-patient")
    assert re.findall(TAG, scrub(scrubber, text, other_patient)) != tag
    other_key = PresidioTextScrubber(pseudonym_key=KEY[::-1], analyzer=analyzer)
    assert re.findall(TAG, scrub(other_key, text, sample_context)) != tag


def test_identifier_tags_ignore_separators_and_kind(scrubber: Any, sample_context: Any) -> None:
    out = scrub(scrubber, "MRN 4471-2290, also written 44712290 and hospital no 4471 2290.", sample_context)
    tags = re.findall(r"\[(?:MRN|ID)-([0-9a-f]{6})\]", out)
    assert len(tags) == 3 and len(set(tags)) == 1
    assert normalise_for_tag("MRN", "4471-2290") == normalise_for_tag("ID", "4471 2290") == "44712290"
    assert normalise_for_tag("PERSON", "Dr. Okafor's") == normalise_for_tag("PERSON", "OKAFOR") == "okafor"


def test_pseudonyms_are_reported_once_to_the_sink(scrubber: Any, sample_context: Any) -> None:
    sink = RecordingSink()
    out = scrubber.scrub_texts(
        [TextItem("Margaret Okafor-Lindqvist, MRN 4471-2290. Margaret is well.")],
        patient=sample_context,
        sink=sink,
    )
    person_tag = re.findall(TAG, out[0])[0]
    assert ("person", person_tag, "Margaret Okafor-Lindqvist") in sink.records
    assert ("person", person_tag, "Margaret") in sink.records
    assert any(kind == "mrn" and original == "4471-2290" for kind, _, original in sink.records)
    assert len(sink.records) == len(set(sink.records))


def test_the_constructor_sink_is_used_when_the_call_gives_none(analyzer: Any, sample_context: Any) -> None:
    sink = RecordingSink()
    PresidioTextScrubber(pseudonym_key=KEY, analyzer=analyzer, sink=sink).scrub_texts(
        [TextItem("Seen by Dr Helen Marsh.")], patient=sample_context
    )
    assert [kind for kind, _, _ in sink.records] == ["person"]


def test_without_a_patient_only_ner_and_recognizers_apply(scrubber: Any, sample_note: str) -> None:
    out = scrub(scrubber, sample_note, None)
    assert "Margaret" not in out and "4471-2290" not in out and "[DATE]" in out
    assert "12 Harbour View Road" not in out and "Portsmouth" not in out


NARRATIVE = (
    '<div xmlns="http://www.w3.org/1999/xhtml"><p class="name">Patient <b>Margaret</b> Okafor-Lindqvist '
    "(MRN 4471-2290) &amp; daughter</p><p>Tel: 023 9261 4407</p>"
    '<a href="mailto:m.okafor@example.org" title="Margaret\'s e-mail">write</a><br/>'
    "<table><tr><td>Dr Helen Marsh</td><td>St Mary's Hospital</td></tr></table><!-- seen by Helen Marsh -->"
    '<img src="data:image/png;base64,iVBORw0KGgo=" alt="photo of Margaret"/></div>'
)


def tags_of(markup: str) -> list[str]:
    return re.findall(r"</?[a-z]+\b", markup)


def test_xhtml_keeps_its_markup_and_loses_its_identifiers(scrubber: Any, sample_context: Any) -> None:
    out = scrub(scrubber, NARRATIVE, sample_context, kind="xhtml")
    assert is_well_formed(out)
    assert out.startswith('<div xmlns="http://www.w3.org/1999/xhtml"><p class="name">Patient <b>[PERSON-')
    assert tags_of(out) == tags_of(NARRATIVE)
    assert "&amp; daughter" in out
    assert 'href="mailto:[EMAIL]"' in out
    for phi in ("Margaret", "Okafor", "4471", "9261", "example.org", "Helen", "Marsh", "St Mary"):
        assert phi not in out, phi
    assert "<!-- seen by [PERSON-" in out
    assert '<img src="data:," alt="photo of [PERSON-' in out


def test_malformed_xhtml_is_scrubbed_as_plain_text(scrubber: Any, sample_context: Any) -> None:
    out = scrub(scrubber, "<div><p>Margaret Okafor-Lindqvist</div>", sample_context, kind="xhtml")
    assert "Margaret" not in out and "Okafor" not in out


def test_batch_result_equals_per_item_result(scrubber: Any, sample_note: str, sample_context: Any) -> None:
    items = [
        TextItem(sample_note),
        TextItem(NARRATIVE, "xhtml"),
        TextItem("Dr Helen Marsh, 92 year old, seen 14 March 2026."),
        TextItem(""),
        TextItem(sample_note),
        TextItem("No identifiers in this one: COPD, CHF, metformin."),
    ]
    together = scrubber.scrub_texts(items, patient=sample_context)
    alone = [scrubber.scrub_texts([item], patient=sample_context)[0] for item in items]
    assert together == alone
    assert together[3] == "" and together[0] == together[4]


def test_identical_strings_are_analysed_once(scrubber: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = scrubber.analyzer.nlp_engine
    seen: list[str] = []
    original = engine.process_batch

    def counting(texts: list[str], language: str, **kwargs: Any) -> Any:
        seen.extend(texts)
        return original(texts, language, **kwargs)

    monkeypatch.setattr(engine, "process_batch", counting)
    scrubber.scrub_texts([TextItem("same text"), TextItem("same text"), TextItem("other")], patient=None)
    assert seen == ["same text", "other"]


def test_overlaps_merge_to_cover_every_finding() -> None:
    findings = [
        Finding(0, 8, "PERSON", 0.85),
        Finding(4, 20, "LOCATION", 0.85),
        Finding(25, 34, "ID", 1.0, key="4471-2290"),
        Finding(25, 34, "MEDICAL_RECORD_NUMBER", 0.95),
        Finding(40, 45, "DATE", 0.9),
        Finding(40, 45, "PERSON", 1.0, key="May"),
    ]
    resolved = resolve_overlaps(findings)
    assert [(f.start, f.end, f.entity) for f in resolved] == [
        (0, 20, "LOCATION"),
        (25, 34, "MEDICAL_RECORD_NUMBER"),
        (40, 45, "PERSON"),
    ]
    assert resolved[1].key == "4471-2290"


def test_batched_analysis_loses_nothing_that_per_string_analysis_finds(
    scrubber: Any, analyzer: Any, sample_note: str, shared_data_texts: list[str]
) -> None:
    texts = [
        sample_note,
        NARRATIVE,
        "Call 555-657-5098 or fax 020 7946 0958; Dr Helen Marsh at 4567 Oak St Apt 3.",
    ]
    texts += shared_data_texts
    batched = scrubber.analyze_texts(texts)
    for text, found in zip(texts, batched, strict=True):
        reference = analyzer.analyze(text, language="en", score_threshold=scrubber.score_threshold)
        covered = {i for r in found for i in range(r.start, r.end)}
        missed = [text[r.start : r.end] for r in reference if not set(range(r.start, r.end)) <= covered]
        assert missed == [], missed


@pytest.fixture(scope="module")
def shared_data_texts() -> list[str]:
    """presidio-research's labelled sentences, when ../shared/data is there (general-domain PII)."""
    from tests.conftest import SHARED_DATA

    path = SHARED_DATA / "presidio_research_synthetic_pii" / "generated_small.json"
    if not Path(path).is_file():
        return []
    return [sample["full_text"] for sample in json.loads(path.read_text(encoding="utf-8-sig"))]


def test_patient_terms_do_not_need_ner(scrubber: Any) -> None:
    patient = PatientContext(
        pseudonym="p",
        date_shift_days=0,
        identifiers=PatientIdentifiers(names=("Zyx Qwv",), given_names=("Zyx",), family_names=("Qwv",)),
    )
    assert re.fullmatch(rf"note: {TAG} and {TAG}", scrub(scrubber, "note: zyx and QWV", patient))


def test_long_texts_are_analysed_in_pieces(
    scrubber: Any, sample_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clinical_ai.deid.engine.text import scrubber as scrubber_module

    line = "Seen by Dr Helen Marsh on 14 March 2026 at Riverside Medical Center, call 555-657-5098.\n"
    whole = scrub(scrubber, line, sample_context)
    monkeypatch.setattr(scrubber_module, "CHUNK_CHARS", 300)
    assert scrub(scrubber, line * 12, sample_context) == whole * 12
    assert len(scrubber_module._chunks(line * 12, 300)) > 3
