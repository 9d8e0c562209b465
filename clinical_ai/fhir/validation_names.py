"""The element names FHIR R4 defines, to tell a path made of FHIR's words from one that carries the
sender's own keys. An element path goes into the audit log only after ``audit_safe_expression``: a key the
sender made up (which could be a patient's name) is replaced by ``<unknown>``. Pure Python."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from clinical_ai.fhir.resource_types import R4B_SUPPORTED_RESOURCE_TYPES, model_class
from clinical_ai.fhir.validation_walk import element_class

_SEGMENT = re.compile(r"^(?P<name>[^\[\]]+)(?P<index>(\[\d+\])*)$")


@cache
def known_element_names() -> frozenset[str]:
    names: set[str] = set()
    seen: set[type[Any]] = set()
    pending: list[type[Any]] = [model_class(t) for t in R4B_SUPPORTED_RESOURCE_TYPES]
    while pending:
        model = pending.pop()
        if model in seen:
            continue
        seen.add(model)
        names.add(model.__name__)
        for field_name, info in model.model_fields.items():
            for candidate in (field_name, info.alias):
                if candidate:
                    names.add(candidate)
                    names.add(f"_{candidate}")
            element = element_class(info.annotation)
            if element is not None:
                pending.append(element)
    return frozenset(names)


def audit_safe_expression(expression: str) -> str:
    known = known_element_names()
    parts = []
    for segment in expression.split("."):
        match = _SEGMENT.match(segment)
        if match and match.group("name") in known:
            parts.append(segment)
        else:
            parts.append("<unknown>" + (match.group("index") if match else ""))
    return ".".join(parts)
