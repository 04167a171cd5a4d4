"""The event-loop diagram: every state and transition drawn, highlights stand out, bad input refused."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import matplotlib.pyplot as plt
import pytest
from matplotlib.colors import to_rgb, to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch
from matplotlib.text import Annotation

import asynclab
from asynclab.diagrams import STATES, TRANSITIONS, plot_event_loop
from asynclab.palette import CANCELLED


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def _texts(fig: Figure) -> list[str]:
    return [text.get_text() for text in fig.axes[0].texts if not isinstance(text, Annotation)]


def _ink(box: FancyBboxPatch) -> float:
    """The opacity of a box's outline: 1 for a drawn state, less for a faded one."""
    return to_rgba(box.get_edgecolor())[3]


def _state_boxes(fig: Figure) -> dict[str, FancyBboxPatch]:
    """Each state's box, found as the box whose centre holds the state's name."""
    ax = fig.axes[0]
    names = {text.get_text(): text.get_position() for text in ax.texts if text.get_text() in STATES}
    boxes: dict[str, FancyBboxPatch] = {}
    for patch in ax.patches:
        if not isinstance(patch, FancyBboxPatch):
            continue
        x, y, w, h = patch.get_x(), patch.get_y(), patch.get_width(), patch.get_height()
        inside = [name for name, (nx, ny) in names.items() if x < nx < x + w and y < ny < y + h]
        if len(inside) == 1:  # the event loop's frame holds three names: not a state's box
            boxes[inside[0]] = patch
    return boxes


def test_every_state_is_a_labelled_box_and_every_transition_an_arrow() -> None:
    fig = plot_event_loop()
    texts = _texts(fig)
    for state in STATES:
        assert texts.count(state) == 1, f"{state} drawn {texts.count(state)} times"
    assert set(_state_boxes(fig)) == set(STATES)
    arrows = [text for text in fig.axes[0].texts if isinstance(text, Annotation)]
    assert len(arrows) == len(TRANSITIONS)
    for _, _, label, _, _ in TRANSITIONS:
        assert label in texts  # each arrow says what moves the task
    assert fig.axes[0].get_title() == "The event loop and the life of a task"


def test_the_task_life_goes_created_scheduled_running_waiting_and_ends_done_or_cancelled() -> None:
    moves = {(start, end) for start, end, *_ in TRANSITIONS}
    assert {("created", "scheduled"), ("scheduled", "running"), ("running", "waiting"),
            ("waiting", "scheduled"), ("running", "done"), ("waiting", "cancelled")} == moves
    assert not any(start in ("done", "cancelled") for start, _ in moves)  # the two ends are final


def test_a_cancelled_task_is_drawn_as_timelines_draw_a_cancelled_call() -> None:
    box = _state_boxes(plot_event_loop())["cancelled"]
    assert box.get_linestyle() == "--"
    assert to_rgb(box.get_edgecolor()) == pytest.approx(to_rgb(CANCELLED))


def test_highlighted_states_stand_out_and_the_others_fade() -> None:
    boxes = _state_boxes(plot_event_loop(highlight=["scheduled", "running"]))
    for state in ("scheduled", "running"):
        assert boxes[state].get_linewidth() > boxes["waiting"].get_linewidth()
        assert _ink(boxes[state]) == 1.0
    for state in ("created", "waiting", "done", "cancelled"):
        assert _ink(boxes[state]) < 0.5
    plain = _state_boxes(plot_event_loop())
    assert {_ink(box) for box in plain.values()} == {1.0}  # nothing faded without a highlight


def test_one_state_name_may_be_given_alone_and_a_title_replaces_the_default() -> None:
    fig = plot_event_loop(highlight="waiting", title="Where an awaiting task sits")
    assert fig.axes[0].get_title() == "Where an awaiting task sits"
    assert _ink(_state_boxes(fig)["waiting"]) == 1.0


def test_an_unknown_state_is_refused_with_the_states_that_exist() -> None:
    with pytest.raises(ValueError, match=r"highlight names a task state, one of created, scheduled, .*got 'sleeping'"):
        plot_event_loop(highlight="sleeping")
    with pytest.raises(ValueError, match="got 'Running'"):
        plot_event_loop(highlight=["scheduled", "Running"])


def test_a_highlight_or_title_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(TypeError, match="highlight must be a state name, a list of them or None, got int"):
        plot_event_loop(highlight=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="title must be a str or None, got int"):
        plot_event_loop(title=1)  # type: ignore[arg-type]


def test_the_diagram_is_public_and_loads_matplotlib_only_when_drawn() -> None:
    assert "plot_event_loop" in asynclab.__all__ and asynclab.plot_event_loop is plot_event_loop
    code = (
        "import sys, asynclab\n"
        "assert 'matplotlib' not in sys.modules, 'import asynclab loaded matplotlib'\n"
        "from asynclab import plot_event_loop\n"
        "assert plot_event_loop.__module__ == 'asynclab.diagrams' and 'matplotlib.pyplot' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60)
