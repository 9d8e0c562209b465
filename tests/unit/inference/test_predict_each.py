"""One patient a model cannot handle fails that patient's run only: ``predict_each`` retries a failing batch
one patient at a time and names the failure per patient."""

from __future__ import annotations

from collections.abc import Sequence

from clinical_ai.inference.engine.types import ModelResult, PatientContext
from clinical_ai.inference.services import predict_each


class ThrowsOnPoison:
    """Raises whenever the patient "poison" is in the batch, as a model's own code might on odd data."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, contexts: Sequence[PatientContext]) -> list[ModelResult]:
        self.calls.append(len(contexts))
        if any(c.patient_pseudonym == "poison" for c in contexts):
            raise ZeroDivisionError("a division by a value the patient has as zero")
        return [ModelResult(c.patient_pseudonym, ()) for c in contexts]


class DropsOne:
    def predict(self, contexts: Sequence[PatientContext]) -> list[ModelResult]:
        return [ModelResult(c.patient_pseudonym, ()) for c in contexts][: max(1, len(contexts) - 1)]


def _patients(*names: str) -> list[PatientContext]:
    return [PatientContext(name, ()) for name in names]


def test_a_batch_that_answers_is_called_once() -> None:
    model = ThrowsOnPoison()
    answers = predict_each(model, _patients("a", "b", "c"), label="m")
    assert model.calls == [3]
    assert [a.patient_pseudonym for a in answers if isinstance(a, ModelResult)] == ["a", "b", "c"]


def test_a_throw_on_one_patient_fails_that_patient_only() -> None:
    model = ThrowsOnPoison()
    answers = predict_each(model, _patients("a", "poison", "c"), label="m")
    assert model.calls == [3, 1, 1, 1]
    assert answers[1] == "model error: ZeroDivisionError"  # the type only: the message may quote the record
    assert isinstance(answers[0], ModelResult) and isinstance(answers[2], ModelResult)


def test_a_wrong_number_of_results_is_retried_per_patient() -> None:
    answers = predict_each(DropsOne(), _patients("a", "b"), label="m")
    assert all(isinstance(a, ModelResult) for a in answers)
    assert [a.patient_pseudonym for a in answers if isinstance(a, ModelResult)] == ["a", "b"]
