"""Span metrics on hand-made spans: every figure checked against a count done by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinical_ai.deid.evaluation import labels
from clinical_ai.deid.evaluation.datasets import load_research
from clinical_ai.deid.evaluation.metrics import Counts, GoldSpan, PredictedSpan, TermSpan, f_beta, score

#          0         1         2         3         4         5
#          0123456789012345678901234567890123456789012345678901234
TEXT = "Mrs Ann Lee, MRN 12345, seen at Oak Clinic on 3 May for COPD."
ANN_LEE = GoldSpan(4, 11, labels.PERSON, "PERSON")
MRN = GoldSpan(17, 22, labels.ID, "MRN")
CLINIC = GoldSpan(32, 42, labels.ORGANIZATION, "FACILITY")
DATE = GoldSpan(46, 51, labels.DATE, "DATE")
COPD = TermSpan(56, 60, "COPD")


def predicted(start: int, end: int, entity: str) -> PredictedSpan:
    return PredictedSpan(start, end, labels.predicted_label(entity), entity)


def test_f_beta() -> None:
    assert f_beta(0.5, 0.5) == pytest.approx(0.5)
    assert f_beta(1.0, 0.5) == pytest.approx(5 * 0.5 / (4 + 0.5))  # 0.5556: recall weighs more
    assert f_beta(0.5, 1.0) == pytest.approx(5 * 0.5 / (4 * 0.5 + 1))  # 0.8333
    assert f_beta(None, 0.0) == 0.0  # nothing predicted, something missed
    assert f_beta(0.0, 0.0) == 0.0
    assert f_beta(1.0, None) is None  # nothing to find


def test_scores_by_label_gold_type_and_micro() -> None:
    spans = [
        predicted(4, 7, "PERSON"),  # part of "Ann Lee": found, 3 of its 6 letters covered
        predicted(17, 22, "US_BANK_NUMBER"),  # the MRN under another identifier kind: same label ID
        predicted(32, 35, "LOCATION"),  # "Oak" as a place: compatible with the organisation
        predicted(46, 51, "PHONE_NUMBER"),  # the date, mislabelled: redacted but not found
        predicted(56, 60, "ORGANIZATION"),  # COPD: a false positive on a clinical term
    ]
    scores = score([(TEXT, [ANN_LEE, MRN, CLINIC, DATE], spans, [COPD])])

    person = scores.by_label[labels.PERSON]
    assert (person.gold, person.found, person.predicted, person.correct) == (1, 1, 1, 1)
    assert (person.gold_chars, person.covered_chars) == (6, 3)
    assert scores.by_label[labels.ID].recall == 1.0 and scores.by_label[labels.ID].precision == 1.0
    date = scores.by_label[labels.DATE]
    assert (date.gold, date.found, date.redacted, date.predicted) == (1, 0, 1, 0)
    assert date.recall == 0.0 and date.redaction_recall == 1.0 and date.precision is None and date.f2 == 0.0
    phone = scores.by_label[labels.PHONE]
    assert (phone.gold, phone.predicted, phone.correct, phone.on_pii) == (0, 1, 0, 1)
    assert phone.recall is None and phone.precision == 0.0
    organization = scores.by_label[labels.ORGANIZATION]
    assert (organization.gold, organization.found, organization.predicted, organization.correct) == (
        1,
        1,
        1,
        0,
    )
    assert scores.by_label[labels.LOCATION].correct == 1  # "Oak" as LOCATION counts for the clinic

    micro = scores.micro
    assert (micro.gold, micro.found, micro.redacted) == (4, 3, 4)
    assert (micro.predicted, micro.correct, micro.on_pii) == (5, 3, 4)
    assert micro.precision == pytest.approx(3 / 5)
    assert micro.recall == pytest.approx(3 / 4)
    assert micro.f2 == pytest.approx(5 * 0.6 * 0.75 / (4 * 0.6 + 0.75))  # 0.7143
    assert micro.redaction_recall == 1.0 and micro.redaction_precision == pytest.approx(4 / 5)
    # letters and digits: Ann Lee 6 (3 covered), 12345 5, Oak Clinic 9 (3 covered), 3 May 4
    assert (micro.gold_chars, micro.covered_chars) == (24, 3 + 5 + 3 + 4)

    assert scores.by_gold_type["FACILITY"].coverage == pytest.approx(3 / 9)
    assert (scores.terms, scores.terms_redacted, dict(scores.redacted_terms)) == (1, 1, {"COPD": 1})


def test_nothing_predicted_and_nothing_to_find() -> None:
    scores = score([(TEXT, [ANN_LEE], [], [COPD]), ("no identifiers here", [], [], [])])
    assert scores.documents == 2
    micro = scores.micro
    assert (micro.recall, micro.precision, micro.f2) == (0.0, None, 0.0)
    assert scores.terms_redacted == 0
    assert Counts().as_dict()["precision"] is None


def test_research_loader_maps_drops_and_realigns(tmp_path: Path) -> None:
    records = [
        {
            "full_text": "Mr. Bo Li lives at nan 12 Elm Road",
            "spans": [
                {"entity_type": "TITLE", "entity_value": "Mr.", "start_position": 0, "end_position": 3},
                {"entity_type": "PERSON", "entity_value": "Bo Li", "start_position": 3, "end_position": 8},
                {"entity_type": "ADDRESS", "entity_value": "nan", "start_position": 19, "end_position": 22},
                {
                    "entity_type": "ADDRESS",
                    "entity_value": "12 Elm Road",
                    "start_position": 23,
                    "end_position": 34,
                },
            ],
        }
    ]
    path = tmp_path / "generated_small.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    dataset = load_research(path)
    [text] = dataset.texts
    assert [(g.start, g.end, g.label, g.kind) for g in text.gold] == [
        (4, 9, labels.PERSON, "PERSON"),  # realigned from 3:8
        (23, 34, labels.LOCATION, "ADDRESS"),
    ]
    assert dict(dataset.adjustments) == {
        "dropped TITLE": 1,
        "dropped ADDRESS 'nan'": 1,
        "PERSON offsets realigned to the value": 1,
    }
