"""The statistics of monitoring, in plain Python (``math`` only): histogram bins, the population stability
index, the Wilson score interval and the two-proportion z-test.

PSI compares two distributions over the same bins: ``sum((a - e) * ln(a / e))`` over the bins' shares ``e``
(reference) and ``a`` (actual). Below 0.1 is usually read as stable, 0.1 to 0.25 as a moderate shift,
above 0.25 as a major one. Empty bins are smoothed (a small share added to every bin) so one empty bin
does not make the index infinite.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

MISSING = "__missing__"
OTHER = "__other__"
# Added to every bin's count before taking shares; small enough not to move a real difference.
PSI_SMOOTHING = 0.5


def quantile_edges(values: Sequence[float], *, bins: int = 10) -> list[float]:
    """Inner edges cutting ``values`` into about ``bins`` bins of equal counts (fewer for few distinct
    values). A value ``v`` falls into bin ``bisect_right(edges, v)``: ``len(edges) + 1`` bins in all."""
    if not values or bins < 2:
        return []
    ordered = sorted(values)
    edges: list[float] = []
    for i in range(1, bins):
        position = (len(ordered) - 1) * i / bins
        low = ordered[math.floor(position)]
        high = ordered[math.ceil(position)]
        edge = low + (high - low) * (position - math.floor(position))
        if not edges or edge > edges[-1]:
            edges.append(edge)
    # An edge at the maximum would leave the last bin empty by construction.
    edges = [edge for edge in edges if edge < ordered[-1]]
    if not edges:
        # One value only (or nearly): below it, it, above it, so that a move either way still shows.
        edges = [ordered[-1], math.nextafter(ordered[-1], math.inf)]
    return edges


def numeric_counts(values: Iterable[float | None], edges: Sequence[float]) -> dict[str, int]:
    """Counts per bin, by the bin's index as text, plus ``MISSING`` for ``None``."""
    counts: Counter[str] = Counter()
    for value in values:
        counts[MISSING if value is None else str(bisect.bisect_right(edges, value))] += 1
    return {str(i): counts.get(str(i), 0) for i in range(len(edges) + 1)} | {MISSING: counts.get(MISSING, 0)}


def categorical_counts(values: Iterable[str | None], categories: Sequence[str]) -> dict[str, int]:
    """Counts per known category, ``OTHER`` for the rest and ``MISSING`` for ``None``."""
    known = set(categories)
    counts: Counter[str] = Counter()
    for value in values:
        counts[MISSING if value is None else value if value in known else OTHER] += 1
    return {c: counts.get(c, 0) for c in (*categories, OTHER, MISSING)}


def top_categories(values: Iterable[str | None], *, limit: int = 20) -> list[str]:
    counts = Counter(v for v in values if v is not None)
    return [name for name, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]]


def shares(
    counts: Mapping[str, int], keys: Sequence[str], *, smoothing: float = PSI_SMOOTHING
) -> list[float]:
    total = sum(counts.get(k, 0) for k in keys) + smoothing * len(keys)
    if total <= 0:
        return [0.0 for _ in keys]
    return [(counts.get(k, 0) + smoothing) / total for k in keys]


def psi(
    reference: Mapping[str, int], actual: Mapping[str, int], *, smoothing: float = PSI_SMOOTHING
) -> float:
    """Population stability index of ``actual`` against ``reference``, both counts over the same bins."""
    keys = sorted(set(reference) | set(actual))
    if not keys or not sum(reference.values()) or not sum(actual.values()):
        return 0.0
    expected = shares(reference, keys, smoothing=smoothing)
    observed = shares(actual, keys, smoothing=smoothing)
    return sum((a - e) * math.log(a / e) for a, e in zip(observed, expected, strict=True))


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def wilson_interval(successes: int, n: int, *, z: float = 1.959963984540054) -> Interval | None:
    """Wilson score interval for a proportion (95 % by default); ``None`` without observations."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes {successes} outside 0..{n}")
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def normal_two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2))


def two_proportion_p_value(x1: int, n1: int, x2: int, n2: int) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test of x1/n1 against x2/n2; ``None`` when either
    group is empty. Equal proportions of 0 or 1 on both sides give 1.0 (no evidence of a difference)."""
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if variance <= 0:
        return 1.0
    return normal_two_sided_p((x1 / n1 - x2 / n2) / math.sqrt(variance))
