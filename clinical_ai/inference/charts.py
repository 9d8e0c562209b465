"""Charts drawn on the server as inline SVG: no JavaScript, no chart library, readable without either.

Pure Python: each function takes labels and numbers and returns one ``<svg>`` element as a string, with
every piece of text escaped, so the caller may insert it into a page as it is. Each chart names itself
with a ``<title>`` and a ``<desc>`` (referenced by ``aria-labelledby``) and each bar or point carries its
own ``<title>`` with the exact figure. Pages show the same numbers in a table below the chart: the table
is the accessible reading, the chart the quick one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

_CHART_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_MAX_X_LABELS = 8  # dates of ten characters fit eight across the default width

# Colour-blind-safe (Okabe-Ito), dark enough on white for the 3:1 contrast graphics need.
PALETTE = {
    "accepted": "#009E73",
    "modified": "#0072B2",
    "rejected": "#D55E00",
    "pending": "#999999",
    "override": "#CC79A7",
    "neutral": "#56B4E9",
}


@dataclass(frozen=True)
class Series:
    """One named row of figures, one per label; ``None`` where there is no figure (a gap, not a zero)."""

    name: str
    values: Sequence[float | None]
    color: str


@dataclass(frozen=True)
class _Frame:
    width: int
    height: int
    left: int = 48
    right: int = 12
    top: int = 36
    bottom: int = 44

    @property
    def plot_width(self) -> float:
        return float(self.width - self.left - self.right)

    @property
    def plot_height(self) -> float:
        return float(self.height - self.top - self.bottom)

    def y(self, value: float, y_max: float) -> float:
        return self.top + self.plot_height * (1 - (value / y_max if y_max else 0.0))


def _text(value: object) -> str:
    return escape(str(value), quote=True)


def _number(value: float) -> str:
    """Coordinates with at most two decimals, so the SVG stays short and stable in tests."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _figure(value: float | None, *, percent: bool) -> str:
    if value is None:
        return "no data"
    if percent:
        return f"{value * 100:.0f} %"
    return f"{value:g}"


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5 x 10^k at or above ``value`` (1 for nothing), the top of a readable axis."""
    if value <= 0 or math.isnan(value):
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)  # pragma: no cover  (the loop always returns)


def _check(chart_id: str, labels: Sequence[str], series: Sequence[Series]) -> None:
    if not _CHART_ID.match(chart_id):
        raise ValueError(f"chart id {chart_id!r} must be a letter then letters, digits, '-' or '_'")
    for one in series:
        if not _COLOR.match(one.color):
            raise ValueError(f"series {one.name!r}: colour must be #rrggbb")
        if len(one.values) != len(labels):
            raise ValueError(f"series {one.name!r} has {len(one.values)} values for {len(labels)} labels")


def _open(chart_id: str, frame: _Frame, title: str, description: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{chart_id}" role="img" '
        f'viewBox="0 0 {frame.width} {frame.height}" width="100%" preserveAspectRatio="xMinYMin meet" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" font-family="system-ui, sans-serif" font-size="11">',
        f'<title id="{chart_id}-title">{_text(title)}</title>',
        f'<desc id="{chart_id}-desc">{_text(description)}</desc>',
    ]


def _legend(frame: _Frame, series: Sequence[Series]) -> list[str]:
    parts = ['<g class="legend" aria-hidden="true">']
    x = float(frame.left)
    for one in series:
        parts.append(f'<rect x="{_number(x)}" y="8" width="10" height="10" fill="{one.color}"/>')
        parts.append(f'<text x="{_number(x + 14)}" y="17" fill="#1b1f24">{_text(one.name)}</text>')
        x += 24 + 7 * len(one.name)
    parts.append("</g>")
    return parts


def _intervals(y_max: float, *, percent: bool) -> int:
    """How many gridline intervals up to ``y_max``, so that every step is a whole 1, 2 or 5 x 10^k."""
    if percent:
        return 4
    for count in (5, 4, 2, 1):
        step = y_max / count
        if step >= 1 and step.is_integer() and nice_ceiling(step) == step:
            return count
    return 5


def _axes(frame: _Frame, labels: Sequence[str], y_max: float, *, percent: bool) -> list[str]:
    parts = ['<g class="axes" aria-hidden="true" fill="#57606a">']
    intervals = _intervals(y_max, percent=percent)
    for i in range(intervals + 1):
        value = y_max * i / intervals
        y = frame.y(value, y_max)
        parts.append(
            f'<line x1="{frame.left}" x2="{frame.width - frame.right}" y1="{_number(y)}" y2="{_number(y)}" '
            f'stroke="#d0d7de" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{frame.left - 6}" y="{_number(y + 4)}" text-anchor="end">'
            f"{_text(_figure(value, percent=percent))}</text>"
        )
    count = len(labels)
    every = max(1, math.ceil(count / _MAX_X_LABELS))
    slot = frame.plot_width / count if count else 0.0
    baseline = frame.height - frame.bottom
    for i, label in enumerate(labels):
        if (count - 1 - i) % every:  # counted from the newest, which is always labelled
            continue
        x = frame.left + slot * (i + 0.5)
        parts.append(f'<text x="{_number(x)}" y="{baseline + 16}" text-anchor="middle">{_text(label)}</text>')
    parts.append(
        f'<line x1="{frame.left}" x2="{frame.width - frame.right}" y1="{baseline}" y2="{baseline}" '
        f'stroke="#57606a" stroke-width="1"/>'
    )
    parts.append("</g>")
    return parts


def _no_data(frame: _Frame) -> str:
    return (
        f'<text x="{_number(frame.left + frame.plot_width / 2)}" '
        f'y="{_number(frame.top + frame.plot_height / 2)}" text-anchor="middle" fill="#57606a">No data</text>'
    )


def stacked_bar_chart(
    *,
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    width: int = 720,
    height: int = 260,
) -> str:
    """One bar per label, the series stacked in order from the bottom. ``None`` counts as zero here."""
    _check(chart_id, labels, series)
    frame = _Frame(width, height)
    totals = [sum(one.values[i] or 0 for one in series) for i in range(len(labels))]
    y_max = nice_ceiling(max(totals, default=0.0))
    parts = _open(chart_id, frame, title, description)
    parts += _legend(frame, series)
    parts += _axes(frame, labels, y_max, percent=False)
    slot = frame.plot_width / len(labels) if labels else 0.0
    bar = max(slot * 0.7, 1.0)
    parts.append('<g class="bars">')
    for i, label in enumerate(labels):
        x = frame.left + slot * i + (slot - bar) / 2
        base = 0.0
        for one in series:
            value = one.values[i] or 0
            if value <= 0:
                continue
            top = frame.y(base + value, y_max)
            bottom = frame.y(base, y_max)
            parts.append(
                f'<rect x="{_number(x)}" y="{_number(top)}" width="{_number(bar)}" '
                f'height="{_number(bottom - top)}" fill="{one.color}">'
                f"<title>{_text(f'{label}: {one.name} {_figure(value, percent=False)}')}</title></rect>"
            )
            base += value
    parts.append("</g>")
    if not any(totals):
        parts.append(_no_data(frame))
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    *,
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    percent: bool = False,
    y_max: float | None = None,
    width: int = 720,
    height: int = 220,
) -> str:
    """One point per label and series, joined by lines; a ``None`` breaks the line. With ``percent`` the
    values are fractions (0.25 is 25 %) and the axis runs to 100 % unless ``y_max`` says otherwise."""
    _check(chart_id, labels, series)
    frame = _Frame(width, height)
    present = [v for one in series for v in one.values if v is not None]
    top_value = y_max if y_max is not None else (1.0 if percent else nice_ceiling(max(present, default=0.0)))
    parts = _open(chart_id, frame, title, description)
    parts += _legend(frame, series)
    parts += _axes(frame, labels, top_value, percent=percent)
    slot = frame.plot_width / len(labels) if labels else 0.0
    for one in series:
        parts.append(f'<g class="line" fill="{one.color}" stroke="{one.color}">')
        run: list[str] = []
        points: list[str] = []
        for i, label in enumerate(labels):
            value = one.values[i]
            if value is None:
                if len(run) > 1:
                    parts.append(f'<polyline fill="none" stroke-width="2" points="{" ".join(run)}"/>')
                run = []
                continue
            x = frame.left + slot * (i + 0.5)
            y = frame.y(min(value, top_value), top_value)
            run.append(f"{_number(x)},{_number(y)}")
            points.append(
                f'<circle cx="{_number(x)}" cy="{_number(y)}" r="3">'
                f"<title>{_text(f'{label}: {one.name} {_figure(value, percent=percent)}')}</title></circle>"
            )
        if len(run) > 1:
            parts.append(f'<polyline fill="none" stroke-width="2" points="{" ".join(run)}"/>')
        parts += points
        parts.append("</g>")
    if not present:
        parts.append(_no_data(frame))
    parts.append("</svg>")
    return "".join(parts)
