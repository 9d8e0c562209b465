"""NEWS2, the Royal College of Physicians' National Early Warning Score 2 (2017), from FHIR vital signs.

The scoring chart is data (``chart.json``, a hash-verified artifact of the manifest); this package reads it,
finds each parameter's latest observation, scores it and sums. Only SpO2 scale 1 is applied: scale 2 is for
patients a clinician has prescribed a lower target saturation for, which the record we see does not say.

A parameter that is not recorded, or whose latest value cannot be read (unknown unit, unrecognised answer,
implausible number), is *missing*; one older than ``stale_after_hours`` before the newest vital sign used is
*stale*. Neither is scored, never as normal: the aggregate is then a partial score, a lower bound. A lower
bound that already reaches a trigger of the RCP chart still escalates, worded "at least" (a partial sum of 7
or more: high; 5 or more, or a red score in one parameter: at least medium); one that reaches none gives no
band at all: the finding "cannot be scored: not enough observations", which says what is missing and asks
for a full set of observations. Pure Python: no Django, no database, no logging of inputs.

Modules: ``chart`` (the chart document, validated), ``reading`` (one parameter's latest reading, units
converted), ``result`` (evidence and wording), ``model`` (the model), ``options`` (the manifest's thresholds
and band mappings). ``build`` is here because the manifest's entrypoint names it:
``clinical_ai.inference.builtin.news2:build`` (``fixtures/models/news2/manifest.json``).
"""

from __future__ import annotations

from typing import cast

from clinical_ai.inference.builtin.news2.chart import chart_load
from clinical_ai.inference.builtin.news2.model import News2Model
from clinical_ai.inference.builtin.news2.options import (
    DEFAULT_QUALITATIVE_RISK,
    DEFAULT_URGENCY,
    QUALITATIVE_RISKS,
    URGENCIES,
    by_band_parse,
    thresholds_parse,
    urgency_not_scored_parse,
)
from clinical_ai.inference.engine.manifest import ManifestError, ModelSpec
from clinical_ai.inference.engine.types import Urgency

__all__ = ["build"]


def build(spec: ModelSpec) -> News2Model:
    """The manifest's entrypoint: the chart artifact, the thresholds and the band mappings."""
    try:
        chart_path = spec.artifacts["chart"]
    except KeyError:
        raise ManifestError("news2: the manifest has no 'chart' artifact") from None
    outputs = spec.manifest.outputs
    urgency = by_band_parse(outputs.get("urgency_by_band"), DEFAULT_URGENCY, URGENCIES, "urgency_by_band")
    return News2Model(
        chart=chart_load(chart_path),
        thresholds=thresholds_parse(spec.manifest.thresholds),
        urgency_by_band=cast(dict[str, Urgency], urgency),
        qualitative_risk_by_band=by_band_parse(
            outputs.get("qualitative_risk_by_band"),
            DEFAULT_QUALITATIVE_RISK,
            QUALITATIVE_RISKS,
            "qualitative_risk_by_band",
        ),
        urgency_not_scored=urgency_not_scored_parse(outputs.get("urgency_when_not_scored")),
    )
