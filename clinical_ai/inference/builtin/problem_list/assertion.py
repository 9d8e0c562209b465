"""Is a mention of a condition an assertion that the patient has it now?

A NegEx/ConText-style classifier of our own. Trigger phrases are matched on word tokens; a trigger before the
mention (a *pre* trigger) or after it (a *post* trigger) changes its status when nothing ends its scope in
between: a terminator word ("but", "however", "presenting"...), a semicolon, the end of the sentence, or more
than ``window`` tokens. Some post triggers must follow the mention at once ("hepatitis C antibody test").
Pseudo-triggers ("not ruled out", "no change") mask the triggers they contain; of overlapping triggers the
longest wins ("no history of" is a negation, not a history).

The statuses, in the order they win when several apply:

- ``negated``: "no", "denies", "negative for", "without", "ruled out"...
- ``family``: "family history of", a relative who has or had it ("mother had"), "in his father";
  anything in a Family History section;
- ``hypothetical``: "if", "risk of", "screening for", "rule out", "possible", "suspected", vaccines, tests
  and education about it: uncertain mentions are not proposed either;
- ``historical``: "history of", "h/o", "previous", "resolved", "in remission"; anything in a Past Medical
  or Surgical History section. A past condition is not proposed as an active problem;
- ``plan``: anything in a Plan section (``## Plan``): plan lines name a condition as the topic of an
  intervention ("lifestyle education regarding hypertension", "diabetes self management plan" given to a
  patient with prediabetes), which asserts nothing about the patient having it;
- ``affirmed`` otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from clinical_ai.inference.builtin.problem_list.text import Token, tokenize

Assertion = Literal["affirmed", "negated", "family", "hypothetical", "historical", "plan"]
NOT_AFFIRMED: tuple[Assertion, ...] = ("negated", "family", "hypothetical", "historical", "plan")
_PRIORITY: tuple[Assertion, ...] = ("negated", "family", "hypothetical", "historical")

SECTION_ASSERTION: dict[str, Assertion] = {
    "family_history": "family",
    "past_medical_history": "historical",
    "past_surgical_history": "historical",
    "plan": "plan",
}

# fmt: off
PRE_TRIGGERS: dict[Assertion, tuple[str, ...]] = {
    "negated": (
        "no", "not", "denies", "denied", "deny", "denying", "negative for", "neg for", "without",
        "free of", "ruled out", "rules out", "no evidence of", "no signs of", "no sign of",
        "no symptoms of", "absence of", "absent", "never had", "never", "no history of", "no h/o",
        "no hx of", "no family history of", "not have", "does not have", "did not have",
    ),
    "family": ("family history", "family history of", "family hx", "fh of", "fhx"),
    "hypothetical": (
        "if", "risk of", "risk for", "at risk", "screening for", "screen for", "screened for",
        "rule out", "to rule out", "r/o", "evaluate for", "evaluation for", "assess for",
        "concern for", "concerning for", "possible", "possibly", "probable", "suspected", "suspect",
        "suspicion of", "question of", "questionable", "may have", "might have", "could be",
        "cannot exclude", "education regarding", "education about", "education on", "counseling",
        "counselling", "prevention of", "prophylaxis", "vaccination for", "vaccine", "immunization",
        "immunizations", "test for", "tested for", "testing for", "return if", "in case of",
        "monitor for", "watch for", "signs and symptoms of",
    ),
    "historical": (
        "history of", "hx of", "h/o", "past medical history", "past medical history of",
        "past history of", "pmh", "previous", "previously", "prior", "remote", "resolved", "former",
        "status post", "s/p", "recovered from", "no longer", "in remission from",
    ),
}
POST_TRIGGERS: dict[Assertion, tuple[str, ...]] = {
    "negated": (
        "was ruled out", "is ruled out", "has been ruled out", "ruled out", "unlikely",
        "is negative", "was negative", "not present", "is absent", "was absent", "was excluded",
        "is excluded", "excluded",
    ),
    "historical": (
        "resolved", "has resolved", "in remission", "in the past", "years ago", "as a child",
        "in childhood", "previously",
    ),
    "family": ("runs in the family", "in the family", "in family"),
}
# Post triggers that must follow the mention at once: "hepatitis C antibody test", "DVT prophylaxis".
ADJACENT_POST_TRIGGERS: dict[Assertion, tuple[str, ...]] = {
    "hypothetical": (
        "screening", "screen", "test", "testing", "antibody", "antigen", "prophylaxis", "prevention",
        "precautions", "vaccine", "vaccination", "immunization", "shot", "education", "risk",
    ),
    "negated": ("negative",),
}
PSEUDO_TRIGGERS = (
    "no increase", "no change", "no significant change", "not only", "not necessarily",
    "not ruled out", "not been ruled out", "not excluded", "without difficulty", "gram negative",
    "not certain if", "not sure if",
)
TERMINATORS = frozenset({
    "but", "however", "although", "though", "except", "yet", "aside", "apart", "presents",
    "presenting", "presented", "now", "currently", "which", "who", "whom", "still", "secondary",
    "due", "cause", "etiology", "source",
})
RELATIVES = frozenset({
    "mother", "father", "mom", "dad", "brother", "brothers", "sister", "sisters", "sibling",
    "siblings", "son", "sons", "daughter", "daughters", "parent", "parents", "grandmother",
    "grandfather", "grandparent", "grandparents", "aunt", "uncle", "cousin", "husband", "wife",
    "spouse", "partner",
})
FAMILY_VERBS = frozenset({"has", "had", "have", "with", "died", "diagnosed", "suffered", "suffers", "history", "s"})
# fmt: on
_RELATIVE_VERB_GAP = 3


@dataclass(frozen=True)
class Trigger:
    kind: Assertion | Literal["pseudo"]
    start: int  # token indices, end exclusive
    end: int
    where: Literal["pre", "post"] = "pre"
    adjacent: bool = False  # a post trigger that must follow the mention at once


def _phrases(table: dict[Assertion, tuple[str, ...]]) -> dict[tuple[str, ...], Assertion]:
    return {
        tuple(t.text for t in tokenize(phrase)): kind for kind, phrases in table.items() for phrase in phrases
    }


_PRE = _phrases(PRE_TRIGGERS)
_POST = _phrases(POST_TRIGGERS)
_ADJACENT = _phrases(ADJACENT_POST_TRIGGERS)
_PSEUDO = {tuple(t.text for t in tokenize(phrase)) for phrase in PSEUDO_TRIGGERS}
_LONGEST = max(len(p) for p in [*_PRE, *_POST, *_ADJACENT, *_PSEUDO])
_DETERMINERS = frozenset({"his", "her", "their", "the"})

# Words that may open a clause before the condition it names: they are never part of an embedding span.
TRIGGER_WORDS = (
    frozenset(word for phrase in [*_PRE, *_PSEUDO] for word in phrase)
    | RELATIVES
    | FAMILY_VERBS
    | {"maternal", "paternal"}
)


@dataclass(frozen=True)
class TriggerSet:
    """The triggers found in one sentence, split by where they act from."""

    pre: tuple[Trigger, ...]
    post: tuple[Trigger, ...]


def _relative_triggers(words: Sequence[str], i: int) -> list[Trigger]:
    """Relatives: "mother had ...", "father's ..." (pre) and "... in his mother" (post)."""
    found = []
    for j in range(i + 1, min(len(words), i + 1 + _RELATIVE_VERB_GAP)):
        if words[j] in FAMILY_VERBS:
            found.append(Trigger("family", i, j + 1, "pre"))
            break
    if i >= 1 and words[i - 1] == "in":
        found.append(Trigger("family", i - 1, i + 1, "post"))
    elif i >= 2 and words[i - 1] in _DETERMINERS and words[i - 2] == "in":
        found.append(Trigger("family", i - 2, i + 1, "post"))
    return found


def _matches(words: Sequence[str]) -> list[Trigger]:
    found: list[Trigger] = []
    for i in range(len(words)):
        for size in range(1, min(_LONGEST, len(words) - i) + 1):
            phrase = tuple(words[i : i + size])
            if phrase in _PSEUDO:
                found.append(Trigger("pseudo", i, i + size))
            if phrase in _PRE:
                found.append(Trigger(_PRE[phrase], i, i + size, "pre"))
            if phrase in _POST:
                found.append(Trigger(_POST[phrase], i, i + size, "post"))
            if phrase in _ADJACENT:
                found.append(Trigger(_ADJACENT[phrase], i, i + size, "post", adjacent=True))
        if words[i] in RELATIVES:
            found.extend(_relative_triggers(words, i))
    return found


def _longest_only(found: Sequence[Trigger]) -> list[Trigger]:
    """Drop triggers inside a strictly longer one (of any kind, pseudo included), then the pseudo ones."""
    kept = [
        trigger
        for trigger in found
        if not any(
            other.start <= trigger.start
            and trigger.end <= other.end
            and other.end - other.start > trigger.end - trigger.start
            for other in found
        )
    ]
    return [t for t in kept if t.kind != "pseudo"]


def triggers_find(tokens: Sequence[Token], *, inside: Sequence[tuple[int, int]] = ()) -> TriggerSet:
    """The triggers of a sentence, except those overlapping a token range of ``inside``: the words of a
    concept's own name are no cue ("no" in "concussion with no loss of consciousness")."""
    found = [
        t
        for t in _longest_only(_matches([t.text for t in tokens]))
        if not any(t.start < end and start < t.end for start, end in inside)
    ]
    return TriggerSet(
        pre=tuple(t for t in found if t.where == "pre"), post=tuple(t for t in found if t.where == "post")
    )


def _blocked(text: str, tokens: Sequence[Token], first: int, last: int) -> bool:
    """Whether tokens[first:last] hold a terminator, or a semicolon lies between them and their neighbours."""
    if any(tokens[i].text in TERMINATORS for i in range(first, last)):
        return True
    left = tokens[first - 1].end if first > 0 else 0
    right = tokens[last].start if last < len(tokens) else len(text)
    return ";" in text[left:right]


def assertion_of(
    *,
    text: str,
    tokens: Sequence[Token],
    triggers: TriggerSet,
    start: int,
    end: int,
    section: str,
    window: int,
) -> Assertion:
    """The status of the mention ``tokens[start:end]`` of a sentence ``text`` in ``section``."""
    by_section = SECTION_ASSERTION.get(section)
    if by_section is not None:
        return by_section
    kinds: set[str] = set()
    for trigger in triggers.pre:
        reaches = trigger.end <= start and start - trigger.end <= window
        if reaches and not _blocked(text, tokens, trigger.end, start):
            kinds.add(trigger.kind)
    for trigger in triggers.post:
        if trigger.start >= end:
            gap = trigger.start - end
            if (gap == 0 if trigger.adjacent else gap <= window) and not _blocked(
                text, tokens, end, trigger.start
            ):
                kinds.add(trigger.kind)
    for kind in _PRIORITY:
        if kind in kinds:
            return kind
    return "affirmed"
