"""The progress channel from a notebook's kernel to the series runner's terminal: events written
throttled, read back whole line by whole line, and shown in place or appended sparingly."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest

from flowllm_kit.progress import (
    PROGRESS_ENV,
    Display,
    Relay,
    Reporter,
    describe,
    format_duration,
    progress_bar,
    read_events,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_reporter_writes_first_throttled_and_last_states(tmp_path: Path) -> None:
    clock, path = Clock(), tmp_path / "events.jsonl"
    reporter = Reporter("work", 10, unit="steps", path=path, min_interval=2.0, clock=clock)
    for step in range(1, 11):
        clock.now += 0.5
        reporter.update_to(step, f"loss={1 / step:.2f}")
    reporter.close()
    reporter.close()  # the final state is written once
    events = _lines(path)
    # Created at t=100, then updates every 0.5 s: written at 102 (step 4) and 104 (step 8).
    assert [e["n"] for e in events] == [0, 4, 8, 10]
    assert [e["done"] for e in events] == [False, False, False, True]
    assert [e["elapsed"] for e in events] == [0.0, 2.0, 4.0, 5.0]
    assert events[-1]["postfix"] == "loss=0.10" and events[-1]["total"] == 10
    assert len({e["bar"] for e in events}) == 1


def test_reporter_without_a_file_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    reporter = Reporter("work", 3)
    reporter.update_to(3)
    reporter.close()
    assert not reporter.active and list(tmp_path.iterdir()) == []


def test_progress_bar_reports_even_when_its_bar_is_hidden(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "events.jsonl"
    monkeypatch.setenv(PROGRESS_ENV, str(path))
    items = list(progress_bar(range(7), desc="loop", unit="items", disable=True))
    assert items == list(range(7))
    with progress_bar(total=5, initial=2, desc="resumed", disable=True) as bar:
        bar.update(3)
        bar.set_postfix(loss="0.5")
    events = _lines(path)
    loop = [e for e in events if e["desc"] == "loop"]
    assert loop[0]["total"] == 7 and loop[-1]["n"] == 7 and loop[-1]["done"]
    resumed = [e for e in events if e["desc"] == "resumed"]
    assert resumed[0]["initial"] == 2 and resumed[-1]["n"] == 5
    assert resumed[-1]["postfix"] == "loss=0.5"


def test_read_events_leaves_a_partial_line_for_later_and_skips_garbage(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    assert read_events(path) == ([], 0)
    first = json.dumps({"bar": "a", "n": 1})
    second = json.dumps({"bar": "a", "n": 2})
    path.write_text(first + "\nnot json\n" + '{"no_bar": 1}\n' + second[:5])
    events, offset = read_events(path)
    assert events == [{"bar": "a", "n": 1}]
    with path.open("a") as stream:
        stream.write(second[5:] + "\n")
    events, offset = read_events(path, offset)
    assert events == [{"bar": "a", "n": 2}] and offset == path.stat().st_size


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0 s"), (42.4, "42 s"), (185, "3:05"), (3725, "1:02:05")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_describe_estimates_the_time_left_from_the_work_done_in_this_run() -> None:
    event = {
        "bar": "x", "desc": "flow training", "n": 30, "total": 100, "initial": 10,
        "unit": "steps", "elapsed": 20.0, "postfix": "loss=0.4", "done": False,
    }  # fmt: skip
    # 20 steps in 20 s since the resume: 70 steps left take 70 s.
    assert describe(event) == (
        "flow training: 30/100 steps (30%) · loss=0.4 · 20 s elapsed · ~1:10 left"
    )
    assert describe({**event, "n": 100, "done": True}).endswith("20 s elapsed · done")
    assert describe({**event, "total": None}) == (
        "flow training: 30 steps · loss=0.4 · 20 s elapsed"
    )


def _event(bar: str, n: int, elapsed: float, done: bool = False) -> dict:
    return {"bar": bar, "desc": bar, "n": n, "total": 100, "elapsed": elapsed, "done": done}


def test_display_appends_sparingly_to_a_file() -> None:
    clock, out = Clock(), io.StringIO()
    display = Display(
        out, interactive=False, append_every=30, min_seconds=5, clock=clock, indent=""
    )
    for second in range(0, 71, 2):  # an event every 2 s for 70 s
        clock.now = 100 + second
        display.show(_event("long", second, float(second)))
    display.show(_event("long", 100, 71.0, done=True))
    for second in range(4):
        display.show(_event("short", second, float(second)))
    display.show(_event("short", 100, 4.0, done=True))
    lines = out.getvalue().splitlines()
    # First line once 5 s have passed (t=6), then every 30 s, then the final state; the short
    # work leaves nothing.
    assert [line.split(":")[1].split("/")[0].strip() for line in lines] == ["6", "36", "66", "100"]
    assert lines[-1].endswith("done") and all(line.startswith("long") for line in lines)
    assert set(display.finished) == {"long", "short"}


def test_display_rewrites_one_line_on_a_terminal() -> None:
    out = io.StringIO()
    display = Display(out, interactive=True, min_seconds=5, indent="")
    display.show(_event("short", 1, 1.0))
    display.show(_event("short", 100, 2.0, done=True))
    display.show(_event("long", 1, 1.0))
    display.show(_event("long", 50, 30.0))
    display.end_line()
    display.show(_event("long", 100, 60.0, done=True))
    text = out.getvalue()
    assert text.count("\n") == 2  # end_line, and the long work's final state
    assert text.startswith("\r\x1b[Kshort: 1/100") and "\r\x1b[K\r\x1b[Klong: 1/100" in text
    assert text.endswith("long: 100/100 it (100%) · 1:00 elapsed · done\n")


def test_relay_shows_every_event_written_while_it_runs(tmp_path: Path) -> None:
    path, out = tmp_path / "events.jsonl", io.StringIO()
    display = Display(out, interactive=False, min_seconds=0, append_every=0, indent="")
    written = threading.Event()

    def write() -> None:
        reporter = Reporter("work", 50, path=path, min_interval=0)
        for step in range(1, 51):
            reporter.update_to(step)
        reporter.close()
        written.set()

    with Relay(path, display, poll=0.01):
        writer = threading.Thread(target=write)
        writer.start()
        writer.join()
    assert written.is_set()
    counts = [int(line.split(": ")[1].split("/")[0]) for line in out.getvalue().splitlines()]
    assert counts == [*range(51), 50]  # every event, in order, the last one twice (done)
