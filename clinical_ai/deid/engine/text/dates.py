"""Find dates in free text and shift them by the patient's offset, keeping the way they were written.

Safe Harbor keeps years and removes every other element of a date, so a date with a day or a month is
shifted ("14 March 2026" -> "2 March 2026" for -12 days; "03/14/1959" -> "03/02/1959") and a year alone,
a duration or a relative expression ("in 2019", "for three days", "yesterday") is left alone. The written
format survives: separators, zero padding, two- or four-digit years, month names full or abbreviated and
their case, ordinal suffixes (recomputed) and weekday names (recomputed when the year is known).
Month-year dates ("March 2026") are shifted from the middle of the month; day-month dates without a year
are shifted within a non-leap reference year (a leap one for 29 February).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass

MONTHS: dict[str, int] = {
    "january": 1,
    "february": 2,
    "march": 3,
    "april": 4,
    "may": 5,
    "june": 6,
    "july": 7,
    "august": 8,
    "september": 9,
    "october": 10,
    "november": 11,
    "december": 12,
    "jan": 1,
    "feb": 2,
    "mar": 3,
    "apr": 4,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "sept": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
}
_MONTH_FULL = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
WEEKDAYS: dict[str, int] = {
    "monday": 0,
    "tuesday": 1,
    "wednesday": 2,
    "thursday": 3,
    "friday": 4,
    "saturday": 5,
    "sunday": 6,
    "mon": 0,
    "tue": 1,
    "tues": 1,
    "wed": 2,
    "thu": 3,
    "thur": 3,
    "thurs": 3,
    "fri": 4,
    "sat": 5,
    "sun": 6,
}
_WEEKDAY_FULL = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _cased_alternation(words: list[str]) -> str:
    # Month and weekday names count only when capitalised ("May 5", "MAY 5"): "may" and "march" are verbs.
    forms = sorted({w.capitalize() for w in words} | {w.upper() for w in words}, key=len, reverse=True)
    return "(?:" + "|".join(forms) + ")"


_FULL_MONTHS = [name for name in MONTHS if len(name) > 4 or name in ("may", "june", "july")]
_ABBREVIATED_MONTHS = [name for name in MONTHS if name not in _FULL_MONTHS]
# An abbreviation may carry its full stop ("Mar."); a full name's following full stop ends the sentence.
_MON = f"(?:{_cased_alternation(_FULL_MONTHS)}|{_cased_alternation(_ABBREVIATED_MONTHS)}\\.?)"
_WD = _cased_alternation(list(WEEKDAYS))
_ORD = r"(?:st|nd|rd|th|ST|ND|RD|TH)"
_WEEKDAY_PREFIX = rf"(?:(?P<wd>{_WD})\.?,?\s+(?:the\s+)?)?"
_END = r"(?![\w-])"

_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # 2026-11-20, 2026/11/20, 2026.11.20 (and the date part of 2026-11-20T10:00)
    (
        "ymd",
        re.compile(
            r"(?<![\w/.-])(?P<y>\d{4})(?P<s>[-/.])(?P<m>\d{1,2})(?P=s)(?P<d>\d{1,2})(?:(?![\w/-]|\.\d)|(?=T\d))"
        ),
    ),
    # 03/14/1959, 14/03/1959, 14.03.1959, 3-14-59
    (
        "numeric",
        re.compile(
            r"(?<![\w/.-])(?P<a>\d{1,2})(?P<s>[-/.])(?P<b>\d{1,2})(?P=s)(?P<y>\d{4}|\d{2})(?![\w/-]|\.\d)"
        ),
    ),
    # 14 March 1959, 14th of March, 1959, 14-Mar-1959, Tuesday 14 Mar '59
    (
        "dmy",
        re.compile(
            rf"(?<![\w-]){_WEEKDAY_PREFIX}(?P<d>\d{{1,2}})(?P<ord>{_ORD})?(?:\s+of)?(?P<sep>[\s-]+|(?=[A-Z]))"
            rf"(?P<mon>{_MON})(?:,?[\s-]+|,?\s*(?='))'?(?P<y>\d{{4}}|(?<=[\s'-])\d{{2}}){_END}"
        ),
    ),
    # March 14, 1959; Mar 14 1959; Tuesday, March 14th, 1959
    (
        "mdy",
        re.compile(
            rf"(?<![\w-]){_WEEKDAY_PREFIX}(?P<mon>{_MON})\s+(?P<d>\d{{1,2}})(?P<ord>{_ORD})?"
            rf"(?:,\s*|\s+)(?P<y>\d{{4}}){_END}"
        ),
    ),
    # 14 March, 14th of March (no year)
    (
        "dm",
        re.compile(
            rf"(?<![\w-]){_WEEKDAY_PREFIX}(?P<d>\d{{1,2}})(?P<ord>{_ORD})?(?:\s+of)?[\s-]+(?P<mon>{_MON})"
            r"(?![\w-]|[\s,'-]*\d)"
        ),
    ),
    # March 14, Mar 14th (no year)
    (
        "md",
        re.compile(
            rf"(?<![\w-]){_WEEKDAY_PREFIX}(?P<mon>{_MON})\s+(?P<d>\d{{1,2}})(?P<ord>{_ORD})?"
            r"(?![\w:]|\.\d|,?\s*\d)"
        ),
    ),
    # March 2026, Mar-2026, Mar '26
    (
        "my",
        re.compile(rf"(?<![\w-])(?P<mon>{_MON})(?:,?\s+|-|\s*(?='))'?(?P<y>\d{{4}}|(?<=')\d{{2}}){_END}"),
    ),
    # 03/2026
    ("numeric_my", re.compile(r"(?<![\w/.-])(?P<m>0?[1-9]|1[0-2])/(?P<y>\d{4})(?![\w/-])")),
)

_HOLIDAYS = re.compile(
    r"\b(?:christmas|xmas|new\s+year'?s?\s+(?:day|eve)|easter|thanksgiving|halloween|boxing\s+day|"
    r"independence\s+day|valentine'?s?\s+day|hogmanay)\b",
    re.IGNORECASE,
)
_ANY_MONTH_WORD = re.compile(
    r"\b(?:january|february|april|june|july|august|september|october|november|december|"
    r"(?-i:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sept?|Oct|Nov|Dec|March|MARCH|MAY))\b",
    re.IGNORECASE,
)
_DAY_MONTH_NUMERIC = re.compile(r"(?<![\d.,/])(?:0?[1-9]|[12]\d|3[01])/(?:0?[1-9]|[12]\d|3[01])(?![\d/])")


@dataclass(frozen=True)
class DateSpan:
    start: int
    end: int
    kind: str


def find_dates(text: str) -> list[DateSpan]:
    """Every date written with a day or a month (not years alone), longest first where they overlap."""
    found: list[DateSpan] = []
    for kind, pattern in _FORMATS:
        for match in pattern.finditer(text):
            readable = _parse(match, kind, day_first=False) or _parse(match, kind, day_first=True)
            if readable is not None:
                found.append(DateSpan(match.start(), match.end(), kind))
    found.sort(key=lambda span: (span.start, -(span.end - span.start)))
    kept: list[DateSpan] = []
    for span in found:
        if kept and span.start < kept[-1].end:
            continue
        kept.append(span)
    return kept


def looks_like_date(text: str) -> bool:
    """For NER date spans the patterns did not parse: does it still name a day or a month?"""
    return bool(_ANY_MONTH_WORD.search(text) or _HOLIDAYS.search(text) or _DAY_MONTH_NUMERIC.search(text))


@dataclass(frozen=True)
class _Parsed:
    date: dt.date
    has_year: bool
    has_day: bool


def _year(raw: str) -> int:
    if len(raw) == 4:
        return int(raw)
    value = int(raw)
    return 2000 + value if value < 50 else 1900 + value


def _safe_date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def _parse(match: re.Match[str], kind: str, *, day_first: bool) -> _Parsed | None:
    groups = match.groupdict()
    if kind == "numeric":
        first, second = int(groups["a"]), int(groups["b"])
        if groups["s"] == "." and len(groups["y"]) == 2:
            return None  # 1.2.10 is more often a version or a score than a date
        if first > 12 >= second:
            day, month = first, second
        elif second > 12 >= first:
            month, day = first, second
        else:
            day, month = (first, second) if day_first else (second, first)
        date = _safe_date(_year(groups["y"]), month, day)
        return _Parsed(date, True, True) if date else None
    if kind == "ymd":
        date = _safe_date(int(groups["y"]), int(groups["m"]), int(groups["d"]))
        return _Parsed(date, True, True) if date else None
    if kind == "numeric_my":
        date = _safe_date(int(groups["y"]), int(groups["m"]), 15)
        return _Parsed(date, True, False) if date else None
    month = MONTHS[groups["mon"].lower().rstrip(".")]
    has_year = groups.get("y") is not None
    has_day = groups.get("d") is not None
    leap_day = not has_year and (month, int(groups["d"])) == (2, 29)
    year = _year(groups["y"]) if has_year else 2000 if leap_day else 2001
    date = _safe_date(year, month, int(groups["d"]) if has_day else 15)
    return _Parsed(date, has_year, has_day) if date else None


def _ordinal(day: int, like: str) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return suffix.upper() if like.isupper() else suffix


def _cased(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like.islower():
        return word.lower()
    return word


def _month_name(month: int, like: str) -> str:
    if like.endswith("."):
        return _month_name(month, like[:-1]) + "."
    full = _MONTH_FULL[month - 1]
    if like.lower() == "sept" and month == 9:
        name = "Sept"
    elif like.lower() in ("may", "june", "july") or len(like) > 4:
        name = full  # "May" is as likely the full name as the abbreviation
    else:
        name = full[:3]
    return _cased(name, like)


def _weekday_name(weekday: int, like: str) -> str:
    full = _WEEKDAY_FULL[weekday]
    return _cased(full if len(like) > 5 else full[:3], like)


def _padded(kind: str, groups: dict[str, str | None]) -> bool:
    """Whether day and month are written with two digits (03/04/2026) or as they come (3/4/2026)."""
    fields = [groups.get(name) for name in ("a", "b", "m", "d")]
    written = [field for field in fields if field is not None]
    if kind == "ymd":
        return True
    if any(field.startswith("0") for field in written):
        return True
    if kind == "dmy" and "-" in (groups.get("sep") or ""):
        return True  # 02-Mar-1959, the clinical systems' style
    return kind == "numeric" and all(len(field) == 2 for field in written)


def _number(value: int, padded: bool) -> str:
    return f"{value:02d}" if padded else str(value)


def _render(match: re.Match[str], kind: str, parsed: _Parsed, shifted: dt.date, *, day_first: bool) -> str:
    groups = match.groupdict()
    padded = _padded(kind, groups)
    replacements: dict[str, str] = {}
    if kind == "numeric":
        first, second = int(groups["a"]), int(groups["b"])
        day_in_first = first > 12 >= second or (not (second > 12 >= first) and day_first)
        day_group, month_group = ("a", "b") if day_in_first else ("b", "a")
        replacements[day_group] = _number(shifted.day, padded)
        replacements[month_group] = _number(shifted.month, padded)
    if groups.get("m") is not None:
        replacements["m"] = _number(shifted.month, padded)
    if groups.get("mon"):
        replacements["mon"] = _month_name(shifted.month, groups["mon"])
    if groups.get("d") is not None:
        replacements["d"] = _number(shifted.day, padded)
    if groups.get("ord"):
        replacements["ord"] = _ordinal(shifted.day, groups["ord"])
    if groups.get("y") is not None and parsed.has_year:
        raw = groups["y"]
        replacements["y"] = str(shifted.year) if len(raw) == 4 else f"{shifted.year % 100:02d}"
    if groups.get("wd") and parsed.has_year:
        replacements["wd"] = _weekday_name(shifted.weekday(), groups["wd"])

    text = match.group(0)
    base = match.start()
    spans = sorted(
        (match.start(name) - base, match.end(name) - base, value) for name, value in replacements.items()
    )
    out: list[str] = []
    cursor = 0
    for start, end, value in spans:
        out.append(text[cursor:start])
        out.append(value)
        cursor = end
    out.append(text[cursor:])
    return "".join(out)


def _full_match(text: str) -> Iterator[tuple[str, re.Match[str]]]:
    for kind, pattern in _FORMATS:
        match = pattern.fullmatch(text)
        if match:
            yield kind, match


def parse_date_text(text: str, *, day_first: bool = False) -> dt.date | None:
    """The date ``text`` (one whole date) stands for; None if it is not one the patterns can read."""
    for kind, match in _full_match(text):
        parsed = _parse(match, kind, day_first=day_first)
        if parsed is not None:
            return parsed.date
    return None


def date_text_year(text: str, *, day_first: bool = False) -> int | None:
    """The year written in ``text`` (one whole date); None when it has none ("14 March") or is unreadable."""
    for kind, match in _full_match(text):
        parsed = _parse(match, kind, day_first=day_first)
        if parsed is not None:
            return parsed.date.year if parsed.has_year else None
    return None


def shift_date_text(text: str, days: int, *, day_first: bool = False) -> str | None:
    """``text`` (one whole date as found by :func:`find_dates`) moved by ``days``, written the same way;
    None when it cannot be read as a date (the caller then writes ``[DATE]``)."""
    for kind, match in _full_match(text):
        parsed = _parse(match, kind, day_first=day_first)
        if parsed is None:
            continue
        try:
            shifted = parsed.date + dt.timedelta(days=days)
        except OverflowError:
            return None
        return _render(match, kind, parsed, shifted, day_first=day_first)
    return None
