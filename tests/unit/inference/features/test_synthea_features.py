"""A realistic feature set over the real Synthea patients of ../shared/data: every value computes, within
physiological bounds, citing resources of the record."""

from __future__ import annotations

import importlib.util
import math
import sys
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from clinical_ai.inference.engine.features.extract import context_as_of, features_extract
from clinical_ai.inference.engine.features.spec import feature_set_parse
from clinical_ai.inference.engine.types import PatientContext

pytestmark = pytest.mark.shared_data
ED_VISIT_SCRIPT = Path(__file__).resolve().parents[4] / "benchmarks" / "ed_visit_model.py"

LOINC = "http://loinc.org"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
SNOMED = "http://snomed.info/sct"
CVX = "http://hl7.org/fhir/sid/cvx"


def observation(name: str, label: str, code: str, aggregate: str, unit: str, **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "resourceType": "Observation",
        "codes": [f"{LOINC}|{code}"],
        "aggregate": aggregate,
        "unit": unit,
        "missing": {"impute": 0},
        **more,
    }


FEATURES: list[dict[str, Any]] = [
    {"name": "age", "label": "age", "source": "age"},
    {"name": "female", "label": "female sex", "source": "sex", "equals": "female"},
    {
        "name": "ed_visits_12m",
        "label": "emergency visits, last 12 months",
        "resourceType": "Encounter",
        "codes": [f"{ACT}|EMER"],
        "window": "P365D",
        "aggregate": "count",
    },
    {
        "name": "inpatient_ever",
        "label": "ever admitted",
        "resourceType": "Encounter",
        "codes": [f"{ACT}|IMP"],
        "aggregate": "present",
    },
    {
        "name": "days_since_visit",
        "label": "days since the last visit",
        "resourceType": "Encounter",
        "aggregate": "time_since",
    },
    observation(
        "sbp_mean_3y", "mean systolic pressure, last 3 years", "8480-6", "mean", "mm[Hg]", window="P3Y"
    ),
    observation("sbp_slope", "systolic pressure trend", "8480-6", "slope", "mm[Hg]", time_unit="d"),
    observation("dbp_max", "highest diastolic pressure", "8462-4", "max", "mm[Hg]"),
    observation("weight_lb", "latest weight", "29463-7", "latest", "[lb_av]"),
    observation("height_m", "latest height", "8302-2", "latest", "m"),
    observation("bmi", "latest body mass index", "39156-5", "latest", "kg/m2"),
    observation("glucose_g_l", "highest glucose", "2339-0", "max", "g/L"),
    observation("creatinine_min", "lowest creatinine", "38483-4", "min", "mg/L"),
    observation("potassium", "latest potassium", "6298-4", "latest", "mmol/L"),
    {
        "name": "conditions",
        "label": "conditions recorded",
        "resourceType": "Condition",
        "aggregate": "count",
    },
    {
        "name": "flu_vaccine_1y",
        "label": "influenza vaccine, last year",
        "resourceType": "Immunization",
        "codes": [f"{CVX}|140"],
        "window": "P1Y",
        "aggregate": "present",
    },
]


def _synthea_reader() -> ModuleType:
    """benchmarks/ed_visit_model.py: its ``bundle_context`` is the one Synthea reader of benchmarks and tests."""
    spec = importlib.util.spec_from_file_location("ed_visit_model", ED_VISIT_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("ed_visit_model", module)
    spec.loader.exec_module(module)
    return module


def patients(shared_data: Path) -> list[PatientContext]:
    reader = _synthea_reader()
    return [
        reader.bundle_context(path, label=path.stem)
        for path in reader.patient_bundle_paths(shared_data / "synthea_r4_ms_anonymizer_samples")
    ]


def test_realistic_features_on_every_synthea_patient(shared_data: Path) -> None:
    feature_set = feature_set_parse(FEATURES, base=Path(), where="test")
    contexts = patients(shared_data)
    assert len(contexts) >= 10
    bounds = {
        "age": (0, 120),
        "sbp_mean_3y": (70, 250),
        "dbp_max": (40, 160),
        "weight_lb": (5, 700),
        "height_m": (0.4, 2.3),
        "bmi": (10, 80),
        "glucose_g_l": (0.3, 6),
        "creatinine_min": (1, 150),
        "potassium": (2, 8),
    }
    observed = dict.fromkeys(bounds, 0)
    for context in contexts:
        vector = features_extract(feature_set, context)
        refs = {source.ref for source in context.resources}
        assert vector.as_of is not None and vector.as_of == context_as_of(context)
        assert vector.refused == ()
        by_name = {value.spec.name: value for value in vector.values}
        for value in vector.values:
            assert value.value is not None and math.isfinite(value.value), (context.patient_pseudonym, value)
            assert set(value.refs) <= refs
            if value.last_time is not None:
                assert value.last_time <= vector.as_of
        for name, (low, high) in bounds.items():
            if by_name[name].status == "observed":
                observed[name] += 1
                assert low <= (by_name[name].value or 0) <= high, (context.patient_pseudonym, name)
        assert by_name["female"].value in (0.0, 1.0)
        assert by_name["days_since_visit"].value is not None and by_name["days_since_visit"].value >= 0
        assert by_name["conditions"].value is not None and by_name["conditions"].value >= 1
        # A year earlier the patient had at most as many conditions, and the window moved with as_of.
        earlier = features_extract(feature_set, context, as_of=vector.as_of - timedelta(days=365))
        past = {value.spec.name: value for value in earlier.values}
        assert (past["conditions"].value or 0) <= (by_name["conditions"].value or 0)
        assert past["ed_visits_12m"].window_end == vector.as_of - timedelta(days=365)
    # Every vital and lab of the set was recorded for most patients (Synthea records them at each check-up).
    for name in ("age", "sbp_mean_3y", "weight_lb", "height_m", "bmi"):
        assert observed[name] >= len(contexts) - 2, name
    assert observed["glucose_g_l"] >= 3 and observed["potassium"] >= 3
