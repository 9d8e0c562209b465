"""UCUM conversions by a factor within one dimension; anything else gives None, never a guess."""

from __future__ import annotations

import pytest

from clinical_ai.inference.engine.observations import CONVERTERS, Quantity, convert


@pytest.mark.parametrize(
    ("value", "code", "target", "expected"),
    [
        (180.0, "[lb_av]", "kg", 81.6466266),
        (81.6466266, "kg", "[lb_av]", 180.0),
        (1.5, "kg", "g", 1500.0),
        (250.0, "mg", "g", 0.25),
        (70.0, "kg", "kg", 70.0),
        (170.0, "cm", "m", 1.7),
        (70.0, "[in_i]", "cm", 177.8),
        (1.8, "m", "mm", 1800.0),
        (27.5, "kg/m2", "kg/m2", 27.5),
        (100.0, "mg/dL", "g/L", 1.0),
        (1.0, "g/L", "mg/dL", 100.0),
        (5.0, "mg/dL", "mg/L", 50.0),
        (14.0, "g/dL", "g/L", 140.0),
        (140.0, "g/L", "g/dL", 14.0),
        (5.5, "mmol/L", "umol/L", 5500.0),
        (88.0, "umol/L", "mmol/L", 0.088),
        (7.2, "10*9/L", "10*3/uL", 7.2),
        (250.0, "10*3/uL", "10*9/L", 250.0),
        (4.5, "10*6/uL", "10*12/L", 4.5),
        (120.0, "pg/mL", "ng/L", 120.0),
        (90.0, "fL", "fL", 90.0),
        (6.0, "mo", "a", 0.5),
        (48.0, "h", "d", 2.0),
        (2.0, "wk", "d", 14.0),
        (1.0, "a", "d", 365.25),
        (72.0, "{beats}/min", "{beats}/min", 72.0),
        (72.0, "/min", "{beats}/min", 72.0),
        (95.0, "mL/min/{1.73_m2}", "mL/min/{1.73_m2}", 95.0),
        (0.5, "L/min", "mL/min", 500.0),
    ],
)
def test_same_dimension_converts(value: float, code: str, target: str, expected: float) -> None:
    assert convert(Quantity(value, code=code), target) == pytest.approx(expected, rel=1e-12)


def test_the_unit_label_is_read_when_there_is_no_code() -> None:
    assert convert(Quantity(154.0, unit="lbs"), "kg") == pytest.approx(69.85322498)
    assert convert(Quantity(5.0, unit="MG/DL"), "mg/dL") == 5.0


@pytest.mark.parametrize(
    ("code", "target"),
    [
        ("mmol/L", "mg/dL"),  # needs the molar mass
        ("mg/dL", "mmol/L"),
        ("meq/L", "mmol/L"),  # equivalents are not moles for a divalent ion
        ("kg", "cm"),
        ("cm", "kg/m2"),
        ("g/dL", "g"),
        ("%", "g/L"),
        ("{score}", "kg"),
        ("furlong", "m"),
        ("U/L", "10*3/uL"),
    ],
)
def test_other_dimension_or_unknown_unit_gives_none(code: str, target: str) -> None:
    assert convert(Quantity(1.0, code=code), target) is None


def test_a_number_without_a_unit_is_no_weight() -> None:
    assert convert(Quantity(80.0), "kg") is None
    assert convert(Quantity(5.0), "mmol/L") is None


def test_a_unit_of_another_dimension_in_the_code_is_not_overridden_by_the_label() -> None:
    # The code says grams per litre; a label saying "kg" must not make it a weight.
    assert convert(Quantity(10.0, unit="kg", code="g/L"), "kg") is None


def test_vital_sign_converters_keep_their_behaviour() -> None:
    assert convert(Quantity(101.3, "degF"), "Cel") == pytest.approx(38.5)
    assert convert(Quantity(0.93), "%") == 93.0
    assert convert(Quantity(120.0), "mm[Hg]") == 120.0  # unitless taken as mm[Hg], as before
    assert convert(Quantity(2.0), "L/min") == 2.0
    assert convert(Quantity(16.0, "breaths/min"), "/min") == 16.0
    with pytest.raises(ValueError, match="no conversion"):
        convert(Quantity(1.0, "kg"), "[furlong_i]")


def test_every_target_converts_to_itself() -> None:
    for target in CONVERTERS:
        assert convert(Quantity(3.0, code=target), target) == pytest.approx(3.0), target
