"""Names the small NER model misses, found by where notes, letters and forms put them (no patient record):
after a title ("Dr Giorgos Van der Merwe"), after a label a person answers ("Name: Chen, Wei"), a role or a
specialty ("Endocrinology: Sofia Rossi (DOB ...)"), at the head of a note before its identifiers, in greetings
and sign-offs, above an address block. Split from recognizers.py, which registers them. No Django."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

from spacy.lang.en.stop_words import STOP_WORDS

from clinical_ai.deid.engine.text.clinical_terms import (
    TITLES,
    is_clinical_word,
    word_set,
    words,
)
from clinical_ai.deid.engine.text.dates import MONTHS
from clinical_ai.deid.engine.text.general_recognizers import starts_street_line
from clinical_ai.deid.engine.text.ner_filter import NAME_TOKEN, is_filler
from clinical_ai.deid.engine.text.patterns import (
    GroupRegexRecognizer,
)

# Entity names produced by this package (Presidio's own keep their names: PHONE_NUMBER, US_SSN, ...).


# --- names after a title -------------------------------------------------------------------------------------

_TITLE = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Professor|Doctor|Sister|Nurse|Rev|Sir|Dame)"
TITLED_NAME_PATTERN = re.compile(
    rf"(?<![\w])(?i:{_TITLE})\.?[ \t]+(?P<value>[A-Z][A-Za-z'\u2019\-]+"
    rf"(?:[ \t]+(?:(?:van|von|der|den|de|da|di|du|le|la|del|bin|al|ten|ter)[ \t]+){{0,2}}[A-Z][A-Za-z'\u2019\-]+){{0,2}})"
)


class TitledNameRecognizer(GroupRegexRecognizer):
    """ "Dr Okafor", "ms. Wijtze": a capitalised word after a title is a name unless it is clinical vocabulary
    ("Dr Review" is not anyone); trailing clinical words are trimmed ("Dr Smith Cardiology")."""

    def spans(self, text: str) -> Iterable[tuple[int, int]]:
        for match in self.pattern.finditer(text):
            tokens = list(NAME_TOKEN.finditer(text, match.start("value"), match.end("value")))
            while tokens and is_filler(tokens[-1].group()):
                tokens.pop()
            if tokens:
                yield tokens[0].start(), tokens[-1].end()


# --- names after a label, a relation word or at the head of a note -----------------------------------------

# Labels after which a name stands ("Patient: Sofia Rossi", "Surgeon: R. Abernethy", "Next of kin: ...").
PERSON_LABELS = frozenset(
    " ".join(words(label))
    for label in re.split(
        r"\s*\|\s*",
        """patient|pt|name|patient name|full name|client|child|baby|deceased|surgeon|assistant|
    assistant surgeon|anaesthetist|anesthetist|scrub nurse|referring|referring clinician|referring physician|
    referring doctor|referrer|referred by|reported by|verified by|dictated by|signed by|authorised by|
    authorized by|checked by|seen by|reviewed by|completed by|written by|typed by|requested by|ordered by|
    caller|clinician|attending|consultant|registrar|resident|gp|doctor|nurse|midwife|pharmacist|endoscopist|
    sonographer|radiologist|physician|provider|author|re|to|from|cc|next of kin|nok|contact|emergency contact|
    carer|guardian|parent|spouse|wife|husband|partner|mother|father|interpreter|witness|key worker|keyworker|
    care coordinator|social worker|named nurse|named consultant|responsible clinician|pcp|family doctor|
    accompanied by|informant|historian|operator|scribe|therapist|dietitian|physiotherapist|enp|anp|
    advanced nurse practitioner|nurse practitioner|physician assistant|fy1|fy2|sho|spr|hcp|account holder|
    holder|cardholder|card holder|policyholder|policy holder|beneficiary|payee|payer|recipient|addressee|
    sender|applicant|tenant|employee|attn|attention|directed by|contact person|account name""",
    )
)
# A label naming a specialty, team or place of care ("Endocrinology:", "Renal team:") may head a name too.
_SERVICE_LABEL_ENDINGS = (
    "ology",
    "iatry",
    "iatrics",
    "ics",
    "medicine",
    "surgery",
    "team",
    "service",
    "clinic",
    "ward",
    "unit",
    "department",
    "nursing",
    "therapy",
    "care",
    "lead",
)
# Words that are family or care roles in running text: a capitalised name right after one is a person.
RELATION_WORDS = word_set(
    """wife husband partner daughter son mother father brother sibling son-in-law daughter-in-law nephew niece
    grandson granddaughter grandmother grandfather aunt uncle cousin carer friend neighbour neighbor
    coordinator fiance fiancee guardian HCP NOK midwife therapist physio physiotherapist worker keyworker
    interpreter chaplain pharmacist registrar consultant FY1 FY2 SHO SpR ENP ANP HCA"""
)
_RELATION_LOWER = frozenset(word.lower() for word in RELATION_WORDS)
# English word endings that names seldom have: after a service label ("Oncology: Partial Response") a
# field of such words is a finding, not a person.
_COMMON_WORD_ENDINGS = (
    "ion",
    "ment",
    "ness",
    "ity",
    "ive",
    "ous",
    "ial",
    "ed",
    "ance",
    "ence",
    "ure",
    "ary",
    "ory",
    "able",
    "ible",
    "ing",
    "ful",
    "less",
    "ical",
)
_ROLE_ENDINGS = ("ologist", "ician", "iatrist", "ographer", "therapist", "nurse", "surgeon")
_NAME_PARTICLES = word_set("van von der den de da di du le la del della bin binti al el ten ter st")
# Capitalised words that answer a label without being a name.
_NOT_NAME_WORDS = word_set(
    """not no none nil unknown n/a na declined same see as above below yes pending awaiting none-known
    self patient unable refused mr mrs ms miss dr none self-referral private staff team ward bed room
    monday tuesday wednesday thursday friday saturday sunday today tomorrow yesterday colleague colleagues
    sir madam all everyone customer member""".replace("n/a", "")
)
_LABEL = re.compile(
    r"(?:^|(?<=[ \t]{2})|(?<=\|)|(?<=\t)|(?<=[.;] ))[ \t]*(?:(?P<label>[A-Za-z][A-Za-z0-9/&'\u2019 \-]{0,38}?)[ \t]*:"
    r"|(?P<bare>(?-i:Patient|PATIENT|Pt|Name|NAME|Client|Re|RE))(?=[ \t]+[A-Z]))[ \t]*",
    re.MULTILINE,
)
# A letter's closing: the name stands on the next line.
_CLOSING = re.compile(
    r"(?im)^[ \t]*(?:yours[ \t]+(?:sincerely|faithfully|truly)|kind[ \t]+regards|best[ \t]+wishes|"
    r"(?:with[ \t]+)?(?:warm[ \t]+|many[ \t]+)?regards|signed)[ \t]*,?[ \t]*\r?\n[ \t]*"
)
# A greeting or a sign-off in a message or letter: "Dear Niall,", "Hi Ximena", "Thanks, Rowan".
_SALUTATION = re.compile(
    r"(?m)(?:^|(?<=[\n>]))[ \t>]*(?:Dear|Hi|Hello|Hey|Good[ \t]+(?:morning|afternoon|evening))[ \t]+"
    r"|(?<![\w])(?:Thanks|Thank[ \t]+you|Many[ \t]+thanks|Cheers|Best|Love)[ \t]*,[ \t]*(?:\r?\n[ \t>]*)?"
)
# A line of a message or a quoted form that holds only a name, at the head of an address block (the street
# line below it, or below an organisation's or a second person's line) or above a phone number or e-mail.
_NAME_LINE = re.compile(r"(?m)^[ \t>]*(?=\S)")
_CONTACT_LINE = re.compile(
    r"[ \t>]*(?:\+?\(?\d[\d \t()\-.]{6,}\d|[\w.+\-]+@[\w\-]+\.[\w.\-]+)[ \t]*\r?$", re.M
)
_BLOCK_HEAD_LINES = 3
# A speaker at the start of a line in a transcript or a dialogue, where the line reads as speech: a quotation,
# or a question or exclamation ending in a word ('Aoife: "Who are you?"', "Cormac: You saved my life!"). A
# note's heading ("Plan: ?PE") carries a query mark before a word, not after one.
_SPEAKER = re.compile(
    r"(?m)^[ \t>]*(?P<name>[A-Z][a-z]+(?:-[A-Z][a-z]+)?)[ \t]*:[ \t]*"
    r"(?=[\"\u201c]|[^\n]*[a-z][?!](?:[ \t\"\u201d]|$))"
)
# A person introduced or asked for in running text: "this is Emeka Abernethy", "Ask for Ximena at the front
# desk", "call me Rasmus", "Met Aoife Castellanos at ...", "Contact Anselm Wainwright on ...".
_INTRODUCTION = re.compile(
    r"(?<![\w-])(?i:this[ \t]+is|my[ \t]+name[ \t]+is|call[ \t]+me|calls[ \t]+me|ask[ \t]+for|speak[ \t]+(?:to|with)|"
    r"spoke[ \t]+(?:to|with)|met(?:[ \t]+with)?|contact|called|parcel[ \t]+for|under)[ \t]+"
)
_RELATION = re.compile(
    rf"(?<![\w-])(?i:{'|'.join(sorted((re.escape(w) for w in RELATION_WORDS), key=len, reverse=True))})[ \t]"
)
_NAME_PIECE = re.compile(r"[^\W\d_]+(?:['\u2019\-][^\W\d_]+)*\d*\.?")
_HEAD_CUE = re.compile(
    r"[ \t]*(?:[,|(][ \t]*)?(?:DOB|D\.O\.B|MRN|NHS|Hosp|born|b\.|Age|aged|\d)|[ \t]{2,}(?:[|(]|[A-Z]{2,}|\d)"
)
_HEAD_LINE = re.compile(
    r"^[ \t]*(?:(?:\d{1,4}[/.\-]\d{1,2}[/.\-]\d{1,4}|[A-Z][a-z]+ \d{1,2}, \d{4}|\d{1,2} [A-Z][a-z]+ \d{4})[ \t]{2,})?",
    re.MULTILINE,
)
_RECORD_CUE = re.compile(r"[ \t]*(?:[,|(][ \t]*)?(?:DOB|D\.O\.B|MRN|NHS|Hosp|born|Age|aged)(?![\w])")
_YEAR_OLD = re.compile(r"[ \t]+is[ \t]+an?[ \t]+\d{1,3}[ \t-]*(?:year|yr|month|week|day)s?[ \t-]*old", re.I)
_STRONG_END = re.compile(r"[ \t]*(?:$|[(,;|\-]|[ \t]{2,}|\r?\n)|[ \t]+(?:DOB|MRN|born|aged?|Age)(?![\w])")


def _name_word(token: str, *, allow_stop: bool) -> bool:
    """A capitalised word that may be part of a name: not clinical vocabulary, a title, a month or a filler."""
    bare = token.rstrip(".")
    if not bare or not bare[0].isupper():
        return False
    lower = bare.lower()
    if lower in _NOT_NAME_WORDS or lower in TITLES or lower in MONTHS:
        return False
    if lower in STOP_WORDS and not allow_stop:
        return False
    if lower in _RELATION_LOWER or lower in PERSON_LABELS or lower.endswith(_ROLE_ENDINGS):
        return False  # "Consultant Neurologist", "Orthopaedic Registrar": roles, not names
    parts = words(bare)
    return bool(parts) and not all(is_clinical_word(part) for part in parts)


def name_after(
    text: str, start: int, *, allow_stop: bool = False, formal: bool = True
) -> tuple[int, int] | None:
    """The name that begins at ``start``: capitalised words (initials, particles such as "van der", a
    "Family, Given" order) on one line; None where the first word is not a name word."""
    pieces: list[re.Match[str]] = []
    cursor = start
    comma_used = False
    line_end = text.find("\n", start)
    line_end = len(text) if line_end < 0 else line_end
    while cursor < line_end and len(pieces) < 5:
        match = _NAME_PIECE.match(text, cursor)
        if match is None:
            break
        token = match.group()
        if not pieces and not _name_word(token, allow_stop=allow_stop):
            return None
        if pieces and token.lower() in _NAME_PARTICLES and not token.endswith("."):
            pass
        elif pieces and not _name_word(token, allow_stop=False):
            break
        if text[match.end() : match.end() + 1] == ":":
            break  # "Date:" is the next label
        if token.endswith(".") and len(token) > 2:
            pieces.append(match)  # "Surgeon: Emeka Whitfield. Pre-assessment": the name ends the sentence
            break
        pieces.append(match)
        gap = re.match(r"[ \t]|,[ \t]", text[match.end() : match.end() + 2])
        if gap is None:
            break
        if gap.group().startswith(","):
            if comma_used or not formal or len(pieces) > 3:
                break
            comma_used = True
        cursor = match.end() + len(gap.group())
    while pieces and pieces[-1].group().lower() in _NAME_PARTICLES:
        pieces.pop()
    if not pieces:
        return None
    end = pieces[-1].end()
    if pieces[-1].group().endswith(".") and len(pieces[-1].group()) > 2:
        end -= 1
    return pieces[0].start(), end


def _is_person_label(label: str) -> bool:
    """A label that a person's name answers: listed ("Patient", "Next of kin") or ending in a role
    ("Reporting sonographer", "Consultant radiologist")."""
    normal = words(label)
    if not normal or len(normal) > 4:
        return False
    last = normal[-1]
    return (
        " ".join(normal) in PERSON_LABELS
        or last in PERSON_LABELS
        or last in _RELATION_LOWER
        or last.endswith(_ROLE_ENDINGS)
    )


def _is_service_label(label: str) -> bool:
    normal = words(label)
    return 0 < len(normal) <= 3 and normal[-1].endswith(_SERVICE_LABEL_ENDINGS)


def _plain_name(text: str) -> bool:
    """Two or more name words, none with an ending that common English words have ("Partial Response")."""
    tokens = [token.lower().rstrip(".") for token in NAME_TOKEN.findall(text)]
    return len(tokens) >= 2 and not any(token.endswith(_COMMON_WORD_ENDINGS) for token in tokens)


_SERVICE_WORDS = word_set(
    "pharmacy reception triage admissions records security switchboard helpdesk desk bot agent operator user system"
)
# A message signed with the sender's name as its last words: "... or me@example.net. Thandiwe Mbeki".
_SIGNATURE = re.compile(r"(?:^|(?<=[.!?]))[ \t]*(?=[A-Z][^\n.!?]*\s*\Z)")


def _names_a_service(name: str) -> bool:
    """ "Contact Dermatology", "Called Pharmacy": a department or a desk, not a person."""
    return any(
        token in _SERVICE_WORDS or token.endswith(_SERVICE_LABEL_ENDINGS)
        for token in (token.lower() for token in NAME_TOKEN.findall(name))
    )


def _heads_address_or_contact(text: str, position: int) -> bool:
    """Whether the lines from ``position`` are a contact's phone or e-mail, or an address block's street line
    below at most two more lines without digits (an organisation, a second addressee)."""
    if _CONTACT_LINE.match(text, position):
        return True
    for _ in range(_BLOCK_HEAD_LINES):
        if starts_street_line(text, position):
            return True
        line_end = text.find("\n", position)
        line = text[position : len(text) if line_end < 0 else line_end]
        if line_end < 0 or not line.strip(" \t>\r") or any(char.isdigit() for char in line):
            return False
        position = line_end + 1
    return False


class LabelledNameRecognizer(GroupRegexRecognizer):
    """Names NER misses where notes put them: after a label ("Patient: Sofia Rossi", "Endocrinology: Sofia
    Rossi (DOB ...)", "Name: Chen, Wei"), after a family or care role ("wife Giorgos Delacroix", "Partner
    Eleanor present"), heading a note before its identifiers ("Eleanor Mbeki  |  MRN ...") and before "is a
    71-year-old". A label that names no person ("Plan:", "Diagnosis:") is taken only with two or more name
    words ending the field (end of line, "(", ",", two spaces, "DOB"...)."""

    def spans(self, text: str) -> Iterable[tuple[int, int]]:
        for match in _LABEL.finditer(text):
            if text[match.end() : match.end() + 1] in ("\n", "\r", ""):
                continue
            label = match.group("label") or match.group("bare")
            person_label = _is_person_label(label)
            if not person_label and not _is_service_label(label):
                continue
            span = name_after(text, match.end(), allow_stop=person_label)
            if span is None:
                continue
            if person_label or (_plain_name(text[span[0] : span[1]]) and _STRONG_END.match(text, span[1])):
                yield span
        for match in _RELATION.finditer(text):
            span = name_after(text, match.end(), allow_stop=True, formal=False)
            if span is not None:
                yield span
        for match in _HEAD_LINE.finditer(text):
            # "Family, Given" only before a record label: "Springfield, IL 62704" heads an address line too.
            formal = name_after(text, match.end())
            if formal is not None and _RECORD_CUE.match(text, formal[1]):
                yield formal
                continue
            span = name_after(text, match.end(), formal=False)
            if span is None or len(NAME_TOKEN.findall(text[span[0] : span[1]])) < 2:
                continue
            if _HEAD_CUE.match(text, span[1]):
                yield span
        for match in _SALUTATION.finditer(text):
            span = name_after(text, match.end(), formal=False)
            if span is not None:
                yield span
        for match in _NAME_LINE.finditer(text):
            span = name_after(text, match.end(), formal=False)
            if span is None or len(NAME_TOKEN.findall(text[span[0] : span[1]])) < 2:
                continue
            line_end = text.find("\n", span[1])
            if line_end < 0 or text[span[1] : line_end].strip(" \t\r.,"):
                continue
            if _heads_address_or_contact(text, line_end + 1):
                yield span
        for match in _SPEAKER.finditer(text):
            name = match.group("name")
            if (
                _name_word(name, allow_stop=False)
                and not _is_person_label(name)
                and not _names_a_service(name)
            ):
                yield match.start("name"), match.end("name")
        for match in _SIGNATURE.finditer(text, max(0, len(text.rstrip()) - 60)):
            span = name_after(text, match.end(), formal=False)
            if (
                span is not None
                and not text[span[1] :].strip()
                and _plain_name(text[span[0] : span[1]])
                and not _names_a_service(text[span[0] : span[1]])
            ):
                yield span
        for match in _INTRODUCTION.finditer(text):
            span = name_after(text, match.end(), formal=False)
            if span is not None and not _names_a_service(text[span[0] : span[1]]):
                yield span
        for match in _CLOSING.finditer(text):
            span = name_after(text, match.end())
            if span is not None:
                yield span
        for match in _YEAR_OLD.finditer(text):
            line_start = text.rfind("\n", 0, match.start()) + 1
            before = re.search(
                r"(?:^|(?<=[\s:]))([^\W_]+(?:['\u2019\-][^\W_]+)*)$", text[line_start : match.start()]
            )
            if before is None:
                continue
            token = before.group(1)
            if _name_word(token.rstrip("0123456789"), allow_stop=False):
                start = line_start + before.start(1)
                yield start, start + len(token)
