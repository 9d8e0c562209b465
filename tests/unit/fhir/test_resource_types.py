from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from clinical_ai.fhir import resource_types
from clinical_ai.fhir.required_codes import REQUIRED_CODES, REQUIRED_CODINGS
from clinical_ai.fhir.validation import supported_resource_types, validate_resource

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_the_r4_resource_list() -> None:
    assert len(resource_types.R4_RESOURCE_TYPES) == 146
    for name in ("Patient", "Observation", "Bundle", "MedicinalProduct", "SubstanceSpecification", "Media"):
        assert resource_types.is_r4_resource_type(name)
    # R4B or R5 additions, abstract types, data types and wrong case are not R4 resource types
    not_r4: tuple[object, ...] = (
        "Citation",
        "SubscriptionTopic",
        "Resource",
        "DomainResource",
        "HumanName",
        "patient",
        "",
        5,
        None,
    )
    for other in not_r4:
        assert not resource_types.is_r4_resource_type(other)


def test_supported_types_are_the_r4_types_r4b_describes() -> None:
    supported = supported_resource_types()
    assert supported == resource_types.R4B_SUPPORTED_RESOURCE_TYPES
    assert supported < resource_types.R4_RESOURCE_TYPES
    assert {"Patient", "Observation", "Bundle", "Encounter", "Condition", "Parameters", "Binary"} <= supported
    assert resource_types.R4_RESOURCE_TYPES - supported == resource_types.R4_ONLY_RESOURCE_TYPES
    assert {
        "EffectEvidenceSynthesis",
        "Evidence",
        "EvidenceVariable",
        "MedicinalProduct",
        "MedicinalProductAuthorization",
        "MedicinalProductContraindication",
        "MedicinalProductIndication",
        "MedicinalProductIngredient",
        "MedicinalProductInteraction",
        "MedicinalProductManufactured",
        "MedicinalProductPackaged",
        "MedicinalProductPharmaceutical",
        "MedicinalProductUndesirableEffect",
        "RiskEvidenceSynthesis",
        "SubstanceNucleicAcid",
        "SubstancePolymer",
        "SubstanceProtein",
        "SubstanceReferenceInformation",
        "SubstanceSourceMaterial",
        "SubstanceSpecification",
    } == resource_types.R4_ONLY_RESOURCE_TYPES


@pytest.mark.parametrize("name", sorted(resource_types.R4B_SUPPORTED_RESOURCE_TYPES))
def test_every_supported_type_has_its_model(name: str) -> None:
    model = resource_types.model_class(name)
    assert model.__resource_type__ == name
    # a bare resource may lack required elements, but it is validated, not refused or crashed on
    issues = validate_resource({"resourceType": name, "id": "x"})
    assert {issue.code for issue in issues} <= {"required", "invariant"}


def test_model_class_refuses_other_names() -> None:
    for name in ("MedicinalProduct", "Foo", "HumanName"):
        with pytest.raises(KeyError):
            resource_types.model_class(name)


def _field(class_name: str, element: str) -> Any:
    model = get_fhir_model_class(class_name)
    matches = [f for name, f in model.model_fields.items() if (f.alias or name) == element]
    assert matches, f"{class_name} has no element {element}"
    return matches[0]


@pytest.mark.parametrize(("class_name", "element"), sorted(REQUIRED_CODES))
def test_required_codes_name_real_code_elements_and_agree_with_r4b(class_name: str, element: str) -> None:
    """Each table entry names a real R4B element. Where R4B lists the codes in full, the lists agree;
    where R4B's list is cut short ("+"), ours extends it."""
    codes = REQUIRED_CODES[(class_name, element)]
    model_field = _field(class_name, element)
    assert "Code()" in str(model_field.annotation)
    enum_values = (model_field.json_schema_extra or {}).get("enum_values")
    if enum_values is None:
        return
    if enum_values[-1] == "+":
        assert set(enum_values[:-1]) < codes
    else:
        assert set(enum_values) == codes


@pytest.mark.parametrize(("class_name", "element"), sorted(REQUIRED_CODINGS))
def test_required_codings_name_codeable_concepts(class_name: str, element: str) -> None:
    assert "CodeableConcept" in str(_field(class_name, element).annotation)
    system, codes = REQUIRED_CODINGS[(class_name, element)]
    assert system.startswith("http://terminology.hl7.org/CodeSystem/")
    assert codes


def test_the_validation_core_imports_no_django() -> None:
    # ``clinical_ai/__init__.py`` starts Celery (and so Django settings): a stand-in parent package lets
    # clinical_ai.fhir be imported on its own, as any layer's pure code would use it.
    code = (
        "import importlib, pkgutil, sys, types\n"
        "package = types.ModuleType('clinical_ai')\n"
        "package.__path__ = ['clinical_ai']\n"
        "sys.modules['clinical_ai'] = package\n"
        "import clinical_ai.fhir\n"
        "for info in pkgutil.iter_modules(clinical_ai.fhir.__path__):\n"
        "    importlib.import_module('clinical_ai.fhir.' + info.name)\n"
        "loaded = [m for m in sys.modules if m.startswith(('clinical_ai.', 'integrations'))]\n"
        "assert 'clinical_ai.fhir.validation' in loaded and 'clinical_ai.fhir.dates' in loaded, loaded\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'celery', 'integrations'))\n"
        "leaked += sorted(m for m in loaded if not m.startswith('clinical_ai.fhir'))\n"
        "print(leaked)\n"
        "sys.exit(1 if leaked else 0)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
