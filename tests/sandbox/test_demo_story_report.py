"""The demo's verdict and A/B plot (pure parts, no demo run): the exit code counts failures and
runtime errors, every wait stops at the overall deadline, and the A/B differences to control get
their own axis with 0 marked."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, cast

import kubernetes.client
import pytest

from artisan_operator.sandbox.report import (
    HEIGHT,
    MARGIN,
    Series,
    Timeline,
    ab_differences,
    ab_svg,
    story_exit_code,
)
from artisan_operator.sandbox.story import Story, StoryOptions, StoryStepFailedError, wait_until

pytestmark = pytest.mark.timeout(5)

ROOT = Path(__file__).resolve().parents[2]
SVG = "{http://www.w3.org/2000/svg}"


# The rows of story_exit_code's docstring table.
@pytest.mark.parametrize(
    ("missing", "failure", "runtime_errors", "code"),
    [
        ([], None, [], 0),
        (["Canary/Aborted"], None, [], 1),
        ([], "deadline passed", [], 1),
        ([], None, ["pod x: exit 137"], 1),
    ],
)
def test_exit_code(missing: list[str], failure: str | None, runtime_errors: list[str], code: int) -> None:
    assert story_exit_code(missing, failure, runtime_errors) == code


# The rows of ab_differences' docstring table.
@pytest.mark.parametrize(
    ("intervals", "expected"),
    [
        ([("control", 4.0, None, None), ("a", 4.5, 0.2, 0.8)], [("a", 0.5, 0.2, 0.8)]),
        (
            [("control", 4.0, None, None), ("a", 3.9, -0.3, 0.1), ("b", None, None, None)],
            [("a", pytest.approx(-0.1), -0.3, 0.1)],
        ),
        ([("control", None, None, None), ("a", 4.5, 0.2, 0.8)], []),
    ],
)
def test_ab_differences(intervals: list[Any], expected: list[Any]) -> None:
    assert ab_differences(intervals) == expected


def plots(series: Series) -> list[ET.Element]:
    return list(ET.fromstring(f"<page>{ab_svg(series)}</page>"))


def test_differences_to_control_have_their_own_axis_with_zero_marked() -> None:
    # Means near 4 and differences near 0: on one axis the bars would sit far from the points.
    series = Series(
        ab_intervals=[
            ("control", 4.0, None, None),
            ("treatment_a", 4.5, 0.2, 0.8),  # clear of 0: a win
            ("treatment_b", 3.9, -0.3, 0.1),  # spans 0: no difference shown
        ]
    )
    means, differences = plots(series)
    assert "mean rating per variant" in means.attrib["aria-label"]
    assert "difference to control" in differences.attrib["aria-label"]
    assert "mean rating − control" in "".join(differences.itertext())
    # the means plot has one point per variant and no interval; the intervals are on the other plot
    assert [c.attrib["data-variant"] for c in means.iter(f"{SVG}circle")] == [
        "control",
        "treatment_a",
        "treatment_b",
    ]
    assert not [line for line in means.iter(f"{SVG}line") if line.attrib.get("class") == "ci"]
    (zero,) = [line for line in differences.iter(f"{SVG}line") if line.attrib.get("class") == "zero"]
    zero_x = float(zero.attrib["x1"])
    assert float(zero.attrib["y1"]) < HEIGHT - MARGIN
    assert "0 = control" in "".join(differences.itertext())
    bars = {
        line.attrib["data-variant"]: (float(line.attrib["x1"]), float(line.attrib["x2"]))
        for line in differences.iter(f"{SVG}line")
        if line.attrib.get("class") == "ci"
    }
    points = {c.attrib["data-variant"]: float(c.attrib["cx"]) for c in differences.iter(f"{SVG}circle")}
    assert set(bars) == set(points) == {"treatment_a", "treatment_b"}  # control is the reference, not a row
    assert zero_x < bars["treatment_a"][0] < points["treatment_a"] < bars["treatment_a"][1]
    assert bars["treatment_b"][0] < points["treatment_b"] < zero_x < bars["treatment_b"][1]


def test_without_a_control_mean_the_difference_plot_says_no_data() -> None:
    means, differences = plots(Series(ab_intervals=[("control", None, None, None), ("a", 4.5, 0.2, 0.8)]))
    assert "no data" in "".join(differences.itertext())
    assert [c.attrib["data-variant"] for c in means.iter(f"{SVG}circle")] == ["a"]


def test_wait_until_stops_at_the_overall_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(StoryStepFailedError, match="before the story's overall deadline"):
        wait_until(lambda: None, 60, "never", interval=0.05, deadline=started + 0.3)
    assert time.monotonic() - started < 1.5
    with pytest.raises(StoryStepFailedError, match=r"never: not within 0s"):
        wait_until(lambda: None, 0.2, "never", interval=0.05, deadline=started + 60)
    assert (
        wait_until(lambda: "done", 60, "at once", deadline=started - 1) == "done"
    )  # one look is still taken


def test_story_waits_use_the_story_deadline(tmp_path: Path) -> None:
    options = StoryOptions(configs=ROOT / "configs" / "demo")
    assert options.deadline_seconds == 600
    story = Story(
        kubernetes.client.ApiClient(),
        cast(Any, None),
        Timeline(lambda _: None),
        options,
        tmp_path,
        deadline=time.monotonic() + 0.2,
    )
    started = time.monotonic()
    with pytest.raises(StoryStepFailedError, match="overall deadline"):
        story.wait_until(lambda: None, 120, "ModelPin Ready", interval=0.05)
    assert time.monotonic() - started < 1.5
