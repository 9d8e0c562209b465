"""The two detectors compared: our scrubber and bare Presidio, over the same verified spaCy pipeline.

- **ours**: :class:`~clinical_ai.deid.engine.text.scrubber.PresidioTextScrubber` as the workers run it:
  the batched analysis (``analyze_texts``), the clinical recognizers and filters, and overlapping findings
  merged (``find``). The spans are exactly what ``scrub_texts`` replaces. No patient record is given here:
  span scores measure the text recognizers alone; patient-informed scrubbing is measured on Synthea.
- **bare Presidio**: ``AnalyzerEngine`` with Presidio's default recognizers and Presidio's default NER
  configuration (``conf/default.yaml``: spaCy ORG ignored, NORP kept as NRP), on the same loaded spaCy
  pipeline, called once per text, as its documentation shows; its default score threshold (0); then
  ``AnonymizerEngine``: the spans are those it replaces after its own conflict resolution.

Importing this module imports Presidio (and with it torch): seconds.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, cast

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")  # before Presidio: no network

from presidio_analyzer import AnalyzerEngine
from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpEngineProvider
from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import OperatorConfig
from presidio_anonymizer.entities import RecognizerResult as AnonymizerInput
from spacy.language import Language

from clinical_ai.deid.engine.text.nlp import LANGUAGE, VerifiedSpacyNlpEngine
from clinical_ai.deid.engine.text.scrubber import PresidioTextScrubber
from clinical_ai.deid.engine.types import TextItem
from clinical_ai.deid.evaluation.labels import predicted_label
from clinical_ai.deid.evaluation.metrics import PredictedSpan

OURS = "ours"
BARE = "bare Presidio"


class ScrubberDetector:
    """Our scrubber, text only (no patient record)."""

    name = OURS

    def __init__(self, scrubber: PresidioTextScrubber) -> None:
        self.scrubber = scrubber

    def detect(self, texts: Sequence[str]) -> list[list[PredictedSpan]]:
        results = self.scrubber.analyze_texts(texts)
        return [
            [
                PredictedSpan(f.start, f.end, predicted_label(f.entity), f.entity)
                for f in self.scrubber.find(text, found, None)
            ]
            for text, found in zip(texts, results, strict=True)
        ]

    def redact(self, texts: Sequence[str]) -> list[str]:
        return self.scrubber.scrub_texts([TextItem(text) for text in texts], patient=None)


def presidio_default_ner_configuration() -> NerModelConfiguration:
    """The NER configuration Presidio uses when given no configuration (its ``conf/default.yaml``)."""
    configuration: dict[str, Any] = NlpEngineProvider().nlp_configuration["ner_model_configuration"]
    return NerModelConfiguration.from_dict(configuration)


def bare_presidio_analyzer(nlp: Language) -> AnalyzerEngine:
    """Presidio's default analyzer (default recognizers, default NER mapping) over ``nlp``."""
    engine = VerifiedSpacyNlpEngine(nlp, ner_model_configuration=presidio_default_ner_configuration())
    return AnalyzerEngine(nlp_engine=engine, supported_languages=[LANGUAGE])


_KEEP = {"DEFAULT": OperatorConfig("keep")}


class PresidioDetector:
    """Naive Presidio: ``analyze`` then ``anonymize``, one text at a time."""

    def __init__(
        self,
        analyzer: AnalyzerEngine,
        anonymizer: AnonymizerEngine | None = None,
        *,
        name: str = BARE,
        score_threshold: float | None = None,
    ) -> None:
        self.analyzer = analyzer
        self.anonymizer = anonymizer or AnonymizerEngine()  # type: ignore[no-untyped-call]
        self.name = name
        self.score_threshold = score_threshold  # None: Presidio's default (0, every result)

    def _analyze(self, text: str) -> list[AnonymizerInput]:
        # The anonymizer declares its own result class; Presidio's documented usage passes the analyzer's
        # results straight in (same fields), as a naive caller does.
        results = self.analyzer.analyze(text=text, language=LANGUAGE, score_threshold=self.score_threshold)
        return cast(list[AnonymizerInput], results)

    def detect(self, texts: Sequence[str]) -> list[list[PredictedSpan]]:
        spans: list[list[PredictedSpan]] = []
        for text in texts:
            results = self._analyze(text)
            # "keep" leaves the text as it is, so the items' offsets are offsets into the original.
            kept = self.anonymizer.anonymize(text=text, analyzer_results=results, operators=_KEEP)
            spans.append(
                sorted(
                    (
                        PredictedSpan(
                            item.start, item.end, predicted_label(item.entity_type), item.entity_type
                        )
                        for item in kept.items
                    ),
                    key=lambda span: (span.start, span.end),
                )
            )
        return spans

    def redact(self, texts: Sequence[str]) -> list[str]:
        redacted: list[str] = []
        for text in texts:
            results = self._analyze(text)
            redacted.append(self.anonymizer.anonymize(text=text, analyzer_results=results).text)
        return redacted
