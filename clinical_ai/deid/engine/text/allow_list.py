"""Clinical abbreviations and eponyms that a news-trained NER model takes for places, organisations or people.

spaCy's small English model reads "ECG with ST depression" as a place ("ST"), "CA breast" as an organisation
and "Crohn's" as a person; replacing them changes what a model downstream reads ("ECG with [LOCATION]
depression"). :class:`AllowList` finds these terms in a text; the scrubber drops the parts of a person, place,
organisation or facility finding that fall on one (``PresidioTextScrubber(allow_list=...)``).

The rule for a word that is both a disease and a surname ("Graves", "Addison", "Cushing", "Bell"):

- a title right before it (Dr, Mr, Mrs, Ms, Prof, Sister...) makes it a person: "Dr Graves saw her" loses
  "Graves" (the titled-name recognizer finds it, and no allowed span starts after a title);
- a disease, sign or score word right after it makes it the eponym: "Graves' disease", "Bell's palsy",
  "Wells score", "Hoehn and Yahr stage 2" (the eponym lists of :mod:`clinical_terms`);
- a bare possessive names the disease for the eponyms that are diseases on their own ("history of
  Crohn's", "Parkinson's, Addison's and Cushing's");
- otherwise NER decides, and a name it finds is replaced: "Graves reviewed her today" is a person.

Abbreviations are matched with their case ("ST", "MS", "CA", "Ca"), so "Ms Rossi" (a title) and "St Mary's"
(a saint) are not taken for them. Patient identifiers from the record are never dropped (they are matched
apart and do not go through this list), nor are identifiers, dates, phones or addresses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from clinical_ai.deid.engine.text.clinical_terms import (
    EPONYM_FOLLOWERS,
    EPONYMOUS_DISEASES,
    EPONYMS,
    SURNAME_EPONYMS,
    TITLES,
    word_set,
    words,
)

# Case-sensitive tokens: abbreviations NER tags as places or organisations ("ST" segment, "MS" multiple
# sclerosis, "PE" pulmonary embolism, "CA" cancer, "Ca" calcium, "MI" myocardial infarction), ECG leads and
# roman numerals of grades and classes ("II, III, aVF", "Forrest IIa"), and short forms of scores and tests.
ABBREVIATIONS = word_set(
    """
    ST STEMI NSTEMI MS PE CA Ca AF MI ATP PS ECOG DESMOND CHD CVA TIA ACS SVT VT VF PEA ROSC DNACPR DNAR AAA
    ALS MND RA OA SLE PMR GCA IBD UC CD TB HIV HCV HBV MRSA CDI ICD CRT PPM LBBB RBBB AV SA QT QTc PR QRS
    II III IV VI VII VIII IX XI XII Ia Ib Ic IIa IIb IIc
    aVF aVL aVR V1 V2 V3 V4 V5 V6 LAD LCx RCA LMS LV RV LA RA EF LVEF TAPSE
    NYHA CCS GOLD COPD CKD AKI ESRD HbA1c SpO2 FiO2 PaO2 PaCO2 GCS NEWS NEWS2 AVPU MUST MoCA MMSE AMTS
    UPDRS EDSS NIHSS ASPECTS TIMI GRACE HEART CURB Synacthen
    """
)

# Multi-word clinical terms (words as :func:`clinical_terms.words` gives them) NER takes for names or places.
PHRASES: tuple[tuple[str, ...], ...] = tuple(
    tuple(word for word in words(phrase) if word != "s")
    for phrase in (
        "St Mark's electrolyte mix",
        "St Mark's solution",
        "Boston Bowel Preparation Scale",
        "Bristol stool chart",
        "Bristol stool scale",
        "Richmond Agitation-Sedation Scale",
        "Epworth Sleepiness Scale",
        "Manchester triage",
        "Manchester category",
        "Montreal classification",
        "Ferric carboxymaltose",
        "Helicobacter pylori",
        "Campylobacter",
        "E. coli",
        "Forrest Ia",
        "Forrest Ib",
        "Forrest IIa",
        "Forrest IIb",
        "Forrest IIc",
        "Forrest III",
        "ECOG PS",
        "McDonald criteria",
        "McDonald 2010 criteria",
        "McDonald 2017 criteria",
        "Fleischner guidelines",
        "Kocherisation",
        "Lewy body",
        "Lewy bodies",
        "Guillain-Barre",
        "Child-Pugh",
        "Cockcroft-Gault",
        "Glasgow-Blatchford",
        "Kellgren-Lawrence",
        "Harvey-Bradshaw",
        "Hoehn and Yahr",
        "Barrett's surveillance",
        "Barrett's oesophagus",
        "Barrett's esophagus",
        "Parkinson's plus",
    )
)

# Units and laboratory flags: "mmol/L (H)" is read as an organisation "L (H".
UNIT_PATTERN = re.compile(
    r"(?<![\w])(?:[mµunp]?mol|[mµunp]?g|m?L|mEq|IU|U|kPa|mmHg|cmH2O)/(?:m?L|dL|mmol|mol|kg|min|24h|day|h)"
    r"(?:/1\.73\s?m2)?(?![\w])"
    r"|\((?:H|L|HH|LL|N|A|\*)\)"
)

_TOKEN = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")
_APOSTROPHES = "'\u2019"
_JOINER = re.compile(r"\s*[-\u2010\u2013/]\s*|\s+and\s+|\s+")
_TITLE_BEFORE = re.compile(r"(?<![\w])(?P<title>[A-Za-z]+)\.?\s+$")
_MAX_CHAIN = 4


@dataclass(frozen=True)
class AllowedSpan:
    """One occurrence of an allow-listed term: ``text[start:end]`` and the listed form it matched."""

    start: int
    end: int
    term: str


def _after_title(text: str, start: int) -> bool:
    match = _TITLE_BEFORE.search(text[max(0, start - 12) : start])
    return match is not None and match.group("title").lower() in TITLES


class AllowList:
    """The allow-listed terms found in a text (see the module's docstring for the rules).

    ``abbreviations`` (case-sensitive tokens) and ``phrases`` (word sequences) extend or replace the defaults;
    eponyms come from :mod:`clinical_terms` (``EPONYMS``, ``SURNAME_EPONYMS``, ``EPONYM_FOLLOWERS``).
    """

    def __init__(
        self,
        *,
        abbreviations: Iterable[str] = ABBREVIATIONS,
        phrases: Iterable[tuple[str, ...]] = PHRASES,
    ) -> None:
        self.abbreviations = frozenset(abbreviations)
        self.phrases = tuple(phrase for phrase in phrases if phrase)
        self._first_words = frozenset(phrase[0] for phrase in self.phrases)

    def spans(self, text: str) -> list[AllowedSpan]:
        tokens = list(_TOKEN.finditer(text))
        found: list[AllowedSpan] = []
        for token in tokens:
            if token.group() in self.abbreviations and not _after_title(text, token.start()):
                found.append(AllowedSpan(token.start(), token.end(), token.group()))
        found += self._phrase_spans(text, tokens)
        found += self._eponym_spans(text, tokens)
        found += [AllowedSpan(m.start(), m.end(), m.group()) for m in UNIT_PATTERN.finditer(text)]
        return sorted(found, key=lambda span: (span.start, -span.end))

    def covered(self, text: str) -> list[tuple[int, int]]:
        """The allowed spans merged into disjoint (start, end) ranges."""
        merged: list[tuple[int, int]] = []
        for span in self.spans(text):
            if merged and span.start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], span.end))
            else:
                merged.append((span.start, span.end))
        return merged

    def _phrase_spans(self, text: str, tokens: list[re.Match[str]]) -> list[AllowedSpan]:
        found: list[AllowedSpan] = []
        normal = [words(token.group()) for token in tokens]
        for index, token in enumerate(tokens):
            if not normal[index] or normal[index][0] not in self._first_words:
                continue
            if _after_title(text, token.start()):
                continue
            for phrase in self.phrases:
                cursor, consumed = index, 0
                while cursor < len(tokens) and consumed < len(phrase):
                    parts = [part for part in normal[cursor] if part != "s"]
                    if not parts:
                        cursor += 1
                        continue
                    if parts != list(phrase[consumed : consumed + len(parts)]):
                        break
                    consumed += len(parts)
                    cursor += 1
                if consumed == len(phrase):
                    found.append(AllowedSpan(token.start(), tokens[cursor - 1].end(), " ".join(phrase)))
        return found

    def _eponym_spans(self, text: str, tokens: list[re.Match[str]]) -> list[AllowedSpan]:
        """An eponym (or a chain of them: "Hoehn and Yahr", "Cockcroft-Gault") with the disease, sign or
        score word after it, or a bare possessive of a disease-eponym ("Crohn's")."""
        found: list[AllowedSpan] = []
        index = 0
        while index < len(tokens):
            first = words(tokens[index].group())
            if not first or not _is_eponym(first[0]) or _after_title(text, tokens[index].start()):
                index += 1
                continue
            chain = [index]
            while len(chain) < _MAX_CHAIN and chain[-1] + 1 < len(tokens):
                nxt = chain[-1] + 1
                gap = text[tokens[chain[-1]].end() : tokens[nxt].start()].lstrip(_APOSTROPHES)
                word = words(tokens[nxt].group())
                if word and word[0] in EPONYMS and _JOINER.fullmatch(gap):
                    chain.append(nxt)
                else:
                    break
            start, last = tokens[index].start(), tokens[chain[-1]]
            names = [words(tokens[i].group())[0] for i in chain]
            possessive = last.group().endswith(("'s", "\u2019s")) or text[last.end() : last.end() + 1] in (
                "'",
                "\u2019",
            )
            after_end = last.end() + (1 if text[last.end() : last.end() + 1] in ("'", "\u2019") else 0)
            follower_index = chain[-1] + 1
            word_after: str | None = None
            if follower_index < len(tokens):
                between = text[after_end : tokens[follower_index].start()]
                follower = words(tokens[follower_index].group())
                # Punctuation between ends the phrase: "Parkinson's, Crohn's" has no follower.
                if follower and not between.strip(" \t-"):
                    word_after = follower[0]
            if word_after is not None and _eponym_follower(names, word_after):
                end = tokens[follower_index].end()
                found.append(AllowedSpan(start, end, text[start:end]))
            elif possessive and names[-1] in EPONYMOUS_DISEASES:
                found.append(AllowedSpan(start, after_end, text[start:after_end]))
            index = chain[-1] + 1
        return found


def _is_eponym(word: str) -> bool:
    return word in EPONYMS or word in SURNAME_EPONYMS


def _eponym_follower(names: list[str], follower: str) -> bool:
    """Whether ``follower`` makes the eponym chain a disease, sign or score: any follower after an eponym that
    is rarely a surname, only its own word after a common surname ("Wells score", not "Wells said")."""
    if any(name in EPONYMS for name in names) and follower in EPONYM_FOLLOWERS:
        return True
    return follower in SURNAME_EPONYMS.get(names[-1], frozenset())


DEFAULT_ALLOW_LIST = AllowList()
