"""The server-drawn SVG charts: well-formed, named for screen readers, every text escaped, figures exact."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

import pytest

from clinical_ai.inference.charts import PALETTE, Series, line_chart, nice_ceiling, stacked_bar_chart

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script> & \' "'


def _parse(markup: str) -> ET.Element:
    return ET.fromstring(markup)  # noqa: S314


def _titles(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}title")]


def test_stacked_bars_are_named_and_carry_each_figure() -> None:
    markup = stacked_bar_chart(
        chart_id="c1",
        title="Suggestions per week",
        description="Accepted and rejected.",
        labels=["2025-W01", "2025-W02"],
        series=[
            Series("Accepted", [3, 0], PALETTE["accepted"]),
            Series("Rejected", [1, 2], PALETTE["rejected"]),
        ],
    )
    root = _parse(markup)
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "c1-title c1-desc"
    assert root.find(f"{SVG}title").get("id") == "c1-title"  # type: ignore[union-attr]
    assert root.find(f"{SVG}desc").text == "Accepted and rejected."  # type: ignore[union-attr]
    titles = _titles(root)
    assert "2025-W01: Accepted 3" in titles
    assert "2025-W01: Rejected 1" in titles
    assert "2025-W02: Rejected 2" in titles
    assert not any(t.startswith("2025-W02: Accepted") for t in titles)  # a zero draws no bar
    assert len(root.findall(f".//{SVG}rect[{SVG}title]")) == 3


def test_bars_stack_to_scale() -> None:
    root = _parse(
        stacked_bar_chart(
            chart_id="c",
            title="t",
            description="d",
            labels=["a"],
            series=[Series("x", [5], "#000000"), Series("y", [5], "#111111")],
            height=244,  # plot height 244 - 36 - 44 = 164
        )
    )
    bars = root.findall(f".//{SVG}g[@class='bars']/{SVG}rect")
    heights = [float(b.get("height", "0")) for b in bars]
    assert heights == [82.0, 82.0]  # 5 of an axis to 10 each
    assert float(bars[0].get("y", "0")) > float(bars[1].get("y", "0"))  # the second sits on the first


def test_every_text_is_escaped() -> None:
    for markup in (
        stacked_bar_chart(
            chart_id="c",
            title=HOSTILE,
            description=HOSTILE,
            labels=[HOSTILE],
            series=[Series(HOSTILE, [1], "#000000")],
        ),
        line_chart(
            chart_id="c",
            title=HOSTILE,
            description=HOSTILE,
            labels=[HOSTILE],
            series=[Series(HOSTILE, [0.5], "#000000")],
            percent=True,
        ),
    ):
        assert "<script>" not in markup
        assert "&lt;script&gt;" in markup
        root = _parse(markup)  # still well-formed
        assert root.find(f"{SVG}title").text == HOSTILE  # type: ignore[union-attr]
        assert not list(root.iter(f"{SVG}script"))


@pytest.mark.parametrize(
    ("chart_id", "color"),
    [('c" onload="x', "#000000"), ("1abc", "#000000"), ("c", "red"), ("c", '#000000" onclick="x')],
)
def test_ids_and_colours_are_checked_not_trusted(chart_id: str, color: str) -> None:
    with pytest.raises(ValueError):
        stacked_bar_chart(
            chart_id=chart_id, title="t", description="d", labels=["a"], series=[Series("s", [1], color)]
        )


def test_series_must_match_the_labels() -> None:
    with pytest.raises(ValueError, match="2 values for 1 labels"):
        line_chart(
            chart_id="c", title="t", description="d", labels=["a"], series=[Series("s", [1, 2], "#000000")]
        )


def test_line_breaks_at_missing_points_and_shows_percent() -> None:
    root = _parse(
        line_chart(
            chart_id="rate",
            title="Override rate",
            description="d",
            labels=["d1", "d2", "d3", "d4", "d5"],
            series=[Series("Override rate", [0.25, 0.5, None, 0.0, 1.0], PALETTE["override"])],
            percent=True,
        )
    )
    assert len(root.findall(f".//{SVG}polyline")) == 2  # d1-d2 and d4-d5
    points = [c.find(f"{SVG}title").text for c in root.iter(f"{SVG}circle")]  # type: ignore[union-attr]
    assert points == [
        "d1: Override rate 25 %",
        "d2: Override rate 50 %",
        "d4: Override rate 0 %",
        "d5: Override rate 100 %",
    ]
    axis = [t.text for t in root.findall(f".//{SVG}g[@class='axes']/{SVG}text")]
    assert "100 %" in axis and "0 %" in axis


def test_no_data_is_said() -> None:
    for markup in (
        stacked_bar_chart(
            chart_id="c",
            title="t",
            description="d",
            labels=["a", "b"],
            series=[Series("s", [0, 0], "#000000")],
        ),
        line_chart(
            chart_id="c", title="t", description="d", labels=["a"], series=[Series("s", [None], "#000000")]
        ),
        stacked_bar_chart(chart_id="c", title="t", description="d", labels=[], series=[]),
    ):
        assert "No data" in markup
        _parse(markup)


def test_many_labels_are_thinned_on_the_axis() -> None:
    labels = [f"day-{i}" for i in range(60)]
    root = _parse(
        stacked_bar_chart(
            chart_id="c", title="t", description="d", labels=labels, series=[Series("s", [1] * 60, "#000000")]
        )
    )
    texts = [t.text or "" for t in root.findall(f".//{SVG}g[@class='axes']/{SVG}text")]
    axis = [text for text in texts if text.startswith("day-")]
    assert len(axis) <= 9
    assert axis[-1] == "day-59"
    positions = [int(a.removeprefix("day-")) for a in axis]
    assert len({b - a for a, b in itertools.pairwise(positions)}) == 1  # evenly spaced


@pytest.mark.parametrize(
    ("y_max", "ticks"), [(10, "0 2 4 6 8 10"), (20, "0 5 10 15 20"), (2, "0 1 2"), (1, "0 1")]
)
def test_count_axes_tick_at_whole_numbers(y_max: int, ticks: str) -> None:
    root = _parse(
        stacked_bar_chart(
            chart_id="c", title="t", description="d", labels=["a"], series=[Series("s", [y_max], "#000000")]
        )
    )
    axis = [t.text or "" for t in root.findall(f".//{SVG}g[@class='axes']/{SVG}text")]
    assert " ".join(a for a in axis if a != "a") == ticks


@pytest.mark.parametrize(
    ("value", "expected"), [(0, 1.0), (1, 1.0), (3, 5.0), (7, 10.0), (12, 20.0), (180, 200.0), (0.3, 0.5)]
)
def test_nice_ceiling(value: float, expected: float) -> None:
    assert nice_ceiling(value) == pytest.approx(expected)
