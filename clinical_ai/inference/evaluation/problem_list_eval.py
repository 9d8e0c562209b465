"""Evaluation of the problem-list-gaps model on the Synthea patient bundles, de-identified as the pipeline does.

Ground truth. Synthea writes, in the Assessment of each encounter note, "Patient is presenting with <the
displays of the conditions diagnosed at that encounter>." A patient's coded Condition is a *true gap* when
its display appears, as a whole list item, in such a sentence of the patient's de-identified notes: the notes
assert it. The oracle reads Synthea's template, not the model's sentence splitter, sections or assertion
rules; conditions the notes only list after "Patient has a history of" are not in it.

Protocols (all on de-identified copies; the model sees only them):

- **remove all**: every true-gap Condition is removed from the patient's input; recall = removed conditions
  proposed / removed; precision = proposals that are a removed condition / all proposals.
- **leave one out**: one true-gap Condition removed at a time, the rest of the problem list left in place.
  This is the realistic case (one code missing from a full list), and the one where a sibling concept on
  the list ("Laceration of hand" when "Laceration of forearm" is missing) may wrongly count as present.
- **full list**: nothing removed; every proposal is a false positive against the coded problem list.
- **probe**: hand-written sentences (``PROBES``), each its own patient with no Conditions, that name a
  condition in words the vocabulary lacks ("elevated blood pressure", typos) or assert nothing. Synthea
  notes repeat each condition's display verbatim, so only this probe exercises the encoder path. It is
  small and written by the vocabulary's author: read it as a smoke test of that path, not as an estimate.

Pure Python: the caller passes the de-identification function (the CLI uses ``deidentify_documents``).
"""

from __future__ import annotations

import base64
import re
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from clinical_ai.deid.engine.pipeline import EntryInput, PipelineResult
from clinical_ai.deid.evaluation.leaks import bundle_entries
from clinical_ai.inference.builtin.problem_list.model import MATCHINGS, Encoder, ProblemListModel
from clinical_ai.inference.builtin.problem_list.notes import attachment_text
from clinical_ai.inference.builtin.problem_list.vocabulary import SNOMED, strip_semantic_tag
from clinical_ai.inference.engine.types import ModelResult, PatientContext, SourceResource

PRESENTING = re.compile(r"^\s*Patient is presenting with (?P<items>.+?)\.?\s*$", re.MULTILINE)
SIMILARITY_SWEEP = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
PRESENT_SWEEP = (0.8, 0.85, 0.9, 0.95)


@dataclass(frozen=True)
class Probe:
    text: str
    expected: frozenset[str]  # acceptable SNOMED codes; empty: nothing should be proposed


def _probe(text: str, *codes: str) -> Probe:
    return Probe(text, frozenset(codes))


PROBES: tuple[Probe, ...] = (
    _probe("Patient has elevated blood pressure, on lisinopril.", "59621000"),
    _probe("Patient is hypertensive.", "59621000"),
    _probe("Diagnosed with hypertensoin last spring.", "59621000"),
    _probe("Assessment: reactive airway disease.", "195967001"),
    _probe("Patient is asthmatic and uses an inhaler.", "195967001"),
    _probe("Known chronic renal insufficiency.", "709044004"),
    _probe("Patient is diabetic.", "73211009", "44054006"),
    _probe("Type two diabetes, diet controlled.", "44054006"),
    _probe("Irregular rhythm consistent with atrial fibrilation.", "49436004"),
    _probe("Elevated cholesterol on the last panel.", "13644009", "55822004"),
    _probe("Elevated triglycerides on the lipid panel.", "302870006", "55822004"),
    _probe("Underactive thyroid gland, on levothyroxine.", "40930008"),
    _probe("Heartburn from reflux disease.", "235595009"),
    _probe("Assessment: urinary infection.", "68566005"),
    _probe("Broken ankle after a fall.", "16114001"),
    _probe("Blood clot in a deep leg vein.", "128053003"),
    _probe("Blood clot in the lungs seen on CT.", "59282003"),
    _probe("Cerebral infarction affecting the left side.", "230690007"),
    _probe("Chronic obstructive airway disease with frequent exacerbations.", "13645005"),
    _probe("Blocked coronary arteries on angiography.", "53741008", "414545008"),
    _probe("Gouty arthritis of the big toe.", "90560007"),
    _probe("Bipolar illness, stable on lithium.", "13746004"),
    _probe("Congestive heart disease with leg swelling.", "42343007", "84114007"),
    _probe("Apneic episodes during sleep.", "73430006", "78275009"),
    _probe("Wear and tear arthritis of the knee.", "239873007", "396275006"),
    _probe("Patient walks two miles every day."),
    _probe("Blood pressure 118/76 mmHg, pulse 72."),
    _probe("Patient works as a school teacher."),
    _probe("Routine annual physical, no concerns."),
    _probe("Knee pain after running, improving with rest."),
    _probe("Mild headache today."),
    _probe("Cough for three days."),
    _probe("Lives with her husband and two children."),
    _probe("Mother has type 2 diabetes."),
    _probe("Denies chest pain or shortness of breath."),
    _probe("No history of asthma."),
    _probe("Screening for colon cancer was discussed."),
    _probe("Pneumonia was ruled out."),
    _probe("History of hypertension, resolved after weight loss."),
    _probe("Return if symptoms of pneumonia develop."),
)


# --- ground truth -------------------------------------------------------------------------------------


def _note_texts(resources: Iterable[SourceResource]) -> list[str]:
    texts: list[str] = []
    for source in resources:
        resource = source.resource
        if source.resource_type == "DocumentReference":
            attachments = [c.get("attachment") or {} for c in resource.get("content") or []]
        elif source.resource_type == "DiagnosticReport":
            attachments = list(resource.get("presentedForm") or [])
        else:
            continue
        texts.extend(t for t in (attachment_text(a) for a in attachments) if t)
    return texts


def _snomed_codings(resource: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    codings = (resource.get("code") or {}).get("coding") or []
    return [c for c in codings if isinstance(c, Mapping) and c.get("system") == SNOMED and c.get("code")]


def affirmed_conditions(resources: Sequence[SourceResource]) -> dict[str, str]:
    """SNOMED code -> display of each coded Condition a "Patient is presenting with" sentence lists."""
    items = [m.group("items").lower() for text in _note_texts(resources) for m in PRESENTING.finditer(text)]
    truth: dict[str, str] = {}
    for source in resources:
        if source.resource_type != "Condition":
            continue
        for coding in _snomed_codings(source.resource):
            display = str(coding.get("display") or (source.resource.get("code") or {}).get("text") or "")
            whole_item = re.compile(r"(?:^|, )" + re.escape(display.strip().lower()) + r"(?=,|$)")
            if display.strip() and any(whole_item.search(item) for item in items):
                truth[str(coding["code"])] = strip_semantic_tag(display)
    return truth


@dataclass(frozen=True)
class PatientCase:
    label: str  # "patient 3": never the bundle's name
    pseudonym: str
    resources: tuple[SourceResource, ...]  # de-identified
    truth: Mapping[str, str]
    truth_lost_to_deid: int = 0  # true gaps in the original notes that the de-identified notes no longer show

    def context(self, *, without: Collection[str] = ()) -> PatientContext:
        """The patient's de-identified resources, less the Conditions coded with any of ``without``."""
        removed = set(without)
        kept = tuple(
            r
            for r in self.resources
            if not (
                r.resource_type == "Condition"
                and {str(c["code"]) for c in _snomed_codings(r.resource)} & removed
            )
        )
        return PatientContext(self.pseudonym, kept)


Deidentify = Callable[[list[EntryInput]], PipelineResult]


def case_from_bundle(bundle: Mapping[str, Any], *, label: str, deidentify: Deidentify) -> PatientCase:
    entries = bundle_entries(bundle)
    result = deidentify(entries)
    pseudonyms = {o.patient_pseudonym for o in result.outputs if o.patient_pseudonym}
    if len(pseudonyms) != 1:
        raise ValueError(f"{label}: expected one patient in the bundle, found {len(pseudonyms)}")
    resources = tuple(
        SourceResource(f"{o.resource.get('resourceType')}/{o.resource.get('id', o.index)}", o.resource)
        for o in result.outputs
        if o.patient_pseudonym
    )
    truth = affirmed_conditions(resources)
    original = affirmed_conditions([SourceResource(str(e.index), e.resource) for e in entries])
    return PatientCase(label, pseudonyms.pop(), resources, truth, len(set(original) - set(truth)))


# --- scoring ------------------------------------------------------------------------------------------


@dataclass
class Tally:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    missed: Counter[str] = field(default_factory=Counter)  # display -> count
    wrong: Counter[str] = field(default_factory=Counter)

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        total = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / total if total else None

    def add(self, other: Tally) -> Tally:
        return Tally(
            self.tp + other.tp,
            self.fp + other.fp,
            self.fn + other.fn,
            self.missed + other.missed,
            self.wrong + other.wrong,
        )


def _proposed(result: ModelResult) -> dict[str, str]:
    return {
        str(f.evidence["concept"]["code"]): str(f.evidence["concept"]["display"])
        for f in result.findings
        if f.kind == "problem"
    }


def _score(truths: Sequence[Mapping[str, str]], results: Sequence[ModelResult]) -> Tally:
    tally = Tally()
    for truth, result in zip(truths, results, strict=True):
        proposed = _proposed(result)
        tally.tp += len(set(proposed) & set(truth))
        for code in set(truth) - set(proposed):
            tally.fn += 1
            tally.missed[truth[code]] += 1
        for code in set(proposed) - set(truth):
            tally.fp += 1
            tally.wrong[proposed[code]] += 1
    return tally


def score_remove_all(model: ProblemListModel, cases: Sequence[PatientCase]) -> Tally:
    results = model.predict([case.context(without=case.truth) for case in cases])
    return _score([case.truth for case in cases], results)


def score_leave_one_out(model: ProblemListModel, cases: Sequence[PatientCase]) -> Tally:
    pairs = [(case, code) for case in cases for code in sorted(case.truth)]
    results = model.predict([case.context(without={code}) for case, code in pairs])
    return _score([{code: case.truth[code]} for case, code in pairs], results)


def score_full_list(model: ProblemListModel, cases: Sequence[PatientCase]) -> Tally:
    results = model.predict([case.context() for case in cases])
    return _score([{} for _ in cases], results)


def probe_context(index: int, text: str) -> PatientContext:
    data = base64.b64encode(text.encode("utf-8")).decode("ascii")
    note = {
        "resourceType": "DocumentReference",
        "status": "current",
        "date": "2024-01-01",
        "content": [{"attachment": {"contentType": "text/plain", "data": data}}],
    }
    return PatientContext(f"probe-{index}", (SourceResource(f"probe-{index}", note),))


def score_probe(model: ProblemListModel, probes: Sequence[Probe] = PROBES) -> Tally:
    results = model.predict([probe_context(i, p.text) for i, p in enumerate(probes)])
    tally = Tally()
    for probe, result in zip(probes, results, strict=True):
        proposed = _proposed(result)
        hit = bool(probe.expected & set(proposed))
        tally.tp += hit
        if probe.expected and not hit:
            tally.fn += 1
            tally.missed[probe.text] += 1
        for code in set(proposed) - probe.expected:
            tally.fp += 1
            tally.wrong[f"{proposed[code]} <- {probe.text!r}"] += 1
    return tally


# --- encoders for the sweep and the timing --------------------------------------------------------------


class CachedEncoder:
    """Encodes each distinct text once: the threshold sweep re-runs the model on the same texts."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self._cache: dict[str, torch.Tensor] = {}

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None) -> torch.Tensor:
        missing = sorted({t for t in texts if t not in self._cache})
        if missing:
            for text, row in zip(missing, self.inner.encode(missing, batch_size=batch_size), strict=True):
                self._cache[text] = row
        if not texts:
            return self.inner.encode([], batch_size=batch_size)
        return torch.stack([self._cache[t] for t in texts])


class CountingEncoder:
    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.calls = 0
        self.texts = 0

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None) -> torch.Tensor:
        self.calls += 1
        self.texts += len(texts)
        return self.inner.encode(texts, batch_size=batch_size)


@dataclass(frozen=True)
class Timing:
    batch_size: int
    seconds: float
    sentences: int
    texts_encoded: int
    encode_calls: int

    @property
    def sentences_per_second(self) -> float:
        return self.sentences / self.seconds if self.seconds else 0.0


def time_predict(
    model: ProblemListModel, cases: Sequence[PatientCase], *, batch_size: int, repeat: int = 3
) -> Timing:
    """Best of ``repeat`` full-list ``predict`` calls over all patients at once, after a warm-up."""
    assert model.encoder is not None
    counter = CountingEncoder(model.encoder)
    timed = model.configured(encoder=counter, batch_size=batch_size)
    contexts = [case.context() for case in cases]
    results = timed.predict(contexts)  # warm-up
    calls, texts = counter.calls, counter.texts
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        timed.predict(contexts)
        best = min(best, time.perf_counter() - started)
    sentences = sum(int(r.features["sentence_count"]) for r in results)
    return Timing(batch_size, best, sentences, texts, calls)


# --- the sweep and the choice -----------------------------------------------------------------------


@dataclass(frozen=True)
class SweepRow:
    similarity: float
    present_similarity: float
    remove_all: Tally
    leave_one_out: Tally
    full_list: Tally
    probe: Tally


def sweep_row(model: ProblemListModel, cases: Sequence[PatientCase]) -> SweepRow:
    return SweepRow(
        model.settings.similarity,
        model.settings.present_threshold,
        score_remove_all(model, cases),
        score_leave_one_out(model, cases),
        score_full_list(model, cases),
        score_probe(model),
    )


def synthea_false_positives(row: SweepRow) -> int:
    return row.remove_all.fp + row.leave_one_out.fp + row.full_list.fp


def choose_similarity(rows: Sequence[SweepRow]) -> SweepRow:
    """Among the thresholds with no false positive on the Synthea runs (where any is a proposal a clinician
    would have to reject on a real record), the best micro F1 over the remove-all run and the probe together;
    ties go to the higher, more conservative, threshold. Without such a threshold, the best F1 of all."""
    clean = [r for r in rows if synthea_false_positives(r) == 0] or list(rows)
    return max(clean, key=lambda r: (r.remove_all.add(r.probe).f1 or 0.0, r.similarity))


def choose_present(rows: Sequence[SweepRow]) -> SweepRow:
    """Best leave-one-out F1 (a sibling wrongly taken as present is a miss), then fewest full-list false
    positives, then the higher threshold."""
    return max(rows, key=lambda r: (r.leave_one_out.f1 or 0.0, -r.full_list.fp, r.present_similarity))


@dataclass(frozen=True)
class Report:
    patients: int
    notes: int
    sentences: int
    conditions: int
    true_gaps: int
    true_gaps_lost_to_deid: int
    similarity_rows: tuple[SweepRow, ...]
    chosen_similarity: SweepRow
    present_rows: tuple[SweepRow, ...]
    chosen: SweepRow  # the chosen similarity and present_similarity together
    ablation: Mapping[str, SweepRow]  # matching mode -> row at the chosen thresholds
    timings: tuple[Timing, ...]
    probes: int = len(PROBES)
    probes_naming: int = sum(1 for p in PROBES if p.expected)


def evaluate(
    model: ProblemListModel,
    cases: Sequence[PatientCase],
    *,
    similarities: Sequence[float] = SIMILARITY_SWEEP,
    presents: Sequence[float] = PRESENT_SWEEP,
    batch_sizes: Sequence[int] = (32, 1),
) -> Report:
    """The sweep, the choice, the ablation and the timing. ``model`` holds the real encoder; the sweep runs
    on a caching copy of it (the same vectors, each text encoded once), the timing on the real one."""
    assert model.encoder is not None
    cached = model.configured(encoder=CachedEncoder(model.encoder))
    start_present = model.settings.present_threshold
    similarity_rows = tuple(
        sweep_row(cached.configured(similarity=t, present_similarity=start_present), cases)
        for t in similarities
    )
    chosen_similarity = choose_similarity(similarity_rows)
    present_rows = tuple(
        sweep_row(cached.configured(similarity=chosen_similarity.similarity, present_similarity=p), cases)
        for p in presents
    )
    chosen = choose_present(present_rows)
    best = cached.configured(similarity=chosen.similarity, present_similarity=chosen.present_similarity)
    ablation: dict[str, SweepRow] = {
        mode: sweep_row(best.configured(matching=mode), cases) for mode in MATCHINGS
    }
    full = best.predict([case.context() for case in cases])
    timings = tuple(
        time_predict(
            model.configured(similarity=chosen.similarity, present_similarity=chosen.present_similarity),
            cases,
            batch_size=size,
        )
        for size in batch_sizes
    )
    return Report(
        patients=len(cases),
        notes=sum(int(r.features["note_count"]) for r in full),
        sentences=sum(int(r.features["sentence_count"]) for r in full),
        conditions=sum(int(r.features["condition_count"]) for r in full),
        true_gaps=sum(len(case.truth) for case in cases),
        true_gaps_lost_to_deid=sum(case.truth_lost_to_deid for case in cases),
        similarity_rows=similarity_rows,
        chosen_similarity=chosen_similarity,
        present_rows=present_rows,
        chosen=chosen,
        ablation=ablation,
        timings=timings,
    )
