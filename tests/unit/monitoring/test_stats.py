"""The pure statistics: PSI, bins, Wilson interval, two-proportion test (no database)."""

from __future__ import annotations

import math
import random

import pytest

from clinical_ai.monitoring import stats


def _normal(mean: float, sd: float, n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(mean, sd) for _ in range(n)]


def test_psi_of_identical_distributions_is_zero() -> None:
    values = _normal(18, 3, 500, 1)
    edges = stats.quantile_edges(values)
    counts = stats.numeric_counts(values, edges)
    assert stats.psi(counts, counts) == pytest.approx(0.0, abs=1e-12)


def test_psi_of_two_samples_of_one_distribution_is_small() -> None:
    reference = _normal(18, 3, 1000, 1)
    edges = stats.quantile_edges(reference)
    same = stats.numeric_counts(_normal(18, 3, 1000, 2), edges)
    assert stats.psi(stats.numeric_counts(reference, edges), same) < 0.1


def test_psi_of_a_shifted_distribution_is_large() -> None:
    reference = _normal(18, 3, 1000, 1)
    edges = stats.quantile_edges(reference)
    shifted = stats.numeric_counts(_normal(24, 3, 1000, 2), edges)
    assert stats.psi(stats.numeric_counts(reference, edges), shifted) > 0.25


def test_psi_sees_values_going_missing() -> None:
    reference = _normal(96, 2, 400, 1)
    edges = stats.quantile_edges(reference)
    half_missing: list[float | None] = [*_normal(96, 2, 200, 2), *([None] * 200)]
    assert stats.psi(stats.numeric_counts(reference, edges), stats.numeric_counts(half_missing, edges)) > 0.25


def test_psi_with_an_empty_bin_is_finite() -> None:
    assert math.isfinite(stats.psi({"0": 100, "1": 0}, {"0": 0, "1": 100}))


def test_quantile_edges_cut_equal_counts() -> None:
    edges = stats.quantile_edges([float(v) for v in range(100)], bins=4)
    assert edges == pytest.approx([24.75, 49.5, 74.25])
    counts = stats.numeric_counts([float(v) for v in range(100)], edges)
    assert [counts[str(i)] for i in range(4)] == [25, 25, 25, 25]


def test_a_constant_input_still_shows_a_move() -> None:
    edges = stats.quantile_edges([3.0] * 50)
    reference = stats.numeric_counts([3.0] * 50, edges)
    assert stats.psi(reference, stats.numeric_counts([3.0] * 50, edges)) == pytest.approx(0.0)
    assert stats.psi(reference, stats.numeric_counts([5.0] * 50, edges)) > 1


def test_categories_other_and_missing() -> None:
    categories = stats.top_categories(["a", "b", "a", None, "c"], limit=2)
    assert categories == ["a", "b"]
    assert stats.categorical_counts(["a", "c", None], categories) == {
        "a": 1,
        "b": 0,
        stats.OTHER: 1,
        stats.MISSING: 1,
    }


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [(0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634), (10, 10, 0.7225, 1.0), (81, 263, 0.2553, 0.3662)],
)
def test_wilson_interval(successes: int, n: int, low: float, high: float) -> None:
    interval = stats.wilson_interval(successes, n)
    assert interval is not None
    assert interval.low == pytest.approx(low, abs=1e-4)
    assert interval.high == pytest.approx(high, abs=1e-4)


def test_wilson_interval_without_observations_and_out_of_range() -> None:
    assert stats.wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        stats.wilson_interval(11, 10)


def test_two_proportion_test() -> None:
    # 10/100 against 30/100: z = 3.536, two-sided p = 0.000407.
    assert stats.two_proportion_p_value(10, 100, 30, 100) == pytest.approx(0.000407, rel=1e-2)
    assert stats.two_proportion_p_value(20, 100, 20, 100) == pytest.approx(1.0)
    assert stats.two_proportion_p_value(0, 50, 0, 50) == 1.0
    assert stats.two_proportion_p_value(1, 0, 1, 10) is None
    assert stats.normal_two_sided_p(1.959963984540054) == pytest.approx(0.05)
