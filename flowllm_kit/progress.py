"""Progress of long work: a bar in the notebook, and a line in the series runner's terminal.

A notebook's progress bars live in its kernel, which the series runner
(``python -m flowllm_kit.notebooks run``, what ``make demo`` calls) never sees. So every long
loop of the kit draws its bar through :func:`progress_bar` (or reports through a
:class:`Reporter` where a library owns the loop, as the transformers ``Trainer`` does), and when
the environment variable :data:`PROGRESS_ENV` names a file, the bar also appends its state there
as JSON lines, at most one every ``min_interval`` seconds plus the first and the last. The runner
sets that variable before it starts a notebook's kernel, reads the file while the notebook runs
(:class:`Relay`) and prints one line per bar (:class:`Display`): updated in place on a terminal,
appended every ``append_every`` seconds when the output is a file or a CI log.

One event (a JSON object per line)::

    {"bar": "1234-3", "desc": "flow training flowllm", "n": 410, "total": 1500, "initial": 0,
     "unit": "step", "elapsed": 38.2, "postfix": "loss=0.4121", "done": false}

tqdm draws the bar itself (it already picks a widget in a notebook and text in a terminal); this
module only adds the file, which neither tqdm nor papermill offers.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "PROGRESS_ENV",
    "Display",
    "ProgressBar",
    "Relay",
    "Reporter",
    "describe",
    "format_duration",
    "progress_bar",
    "read_events",
]

PROGRESS_ENV = "FLOWLLM_KIT_PROGRESS"
_ids = itertools.count()


class Reporter:
    """Appends the state of one piece of long work to the progress file, throttled.

    Does nothing when no file is named (``path`` None and :data:`PROGRESS_ENV` unset), so code
    can create one unconditionally.

    Args:
        desc: What the work is ("LLM fine-tuning", "CHGNet relax", ...).
        total: Units of work in all (``None`` when unknown).
        initial: Units already done before this run started (a resumed run); the runner's time
            estimate counts only the units done since.
        unit: Name of one unit ("step", "crystal", ...).
        path: The progress file (default: the file :data:`PROGRESS_ENV` names, if any).
        min_interval: Seconds between two events of this reporter (the first and the last are
            always written).
        clock: Seconds, monotonic (a test passes a fake one).
    """

    def __init__(
        self,
        desc: str,
        total: int | None,
        *,
        initial: int = 0,
        unit: str = "it",
        path: str | Path | None = None,
        min_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if path is None:
            path = os.environ.get(PROGRESS_ENV) or None
        self.path = Path(path) if path is not None else None
        self.desc, self.total, self.initial, self.unit = desc, total, initial, unit
        self.n = initial
        self.postfix = ""
        self.min_interval = min_interval
        self._clock = clock
        self._start = clock()
        self._last: float | None = None
        self._closed = False
        self.id = f"{os.getpid()}-{next(_ids)}"
        self._write(done=False)

    @property
    def active(self) -> bool:
        """Whether events are written (a progress file is named)."""
        return self.path is not None

    def update_to(self, n: int, postfix: str | None = None) -> None:
        """Record that ``n`` units are done (and the running loss or other ``postfix``)."""
        self.n = n
        if postfix is not None:
            self.postfix = postfix
        if self._last is None or self._clock() - self._last >= self.min_interval:
            self._write(done=False)

    def close(self) -> None:
        """Write the final state (once)."""
        if not self._closed:
            self._closed = True
            self._write(done=True)

    def _write(self, *, done: bool) -> None:
        if self.path is None:
            return
        now = self._clock()
        self._last = now
        event = {
            "bar": self.id,
            "desc": self.desc,
            "n": self.n,
            "total": self.total,
            "initial": self.initial,
            "unit": self.unit,
            "elapsed": round(now - self._start, 3),
            "postfix": self.postfix,
            "done": done,
        }
        # One short write per line in append mode: lines of processes that share the file
        # (a worker pool) do not interleave.
        with self.path.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(event) + "\n")


class ProgressBar:
    """A tqdm bar (shown unless ``disable``) and a :class:`Reporter` (active whenever the
    series runner asked for progress, even with the bar disabled), driven together.

    Use it as tqdm: ``update``, ``set_postfix``, ``close``, as a context manager, or iterate
    over it when it wraps an iterable.
    """

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        desc: str,
        total: int | None = None,
        initial: int = 0,
        unit: str = "it",
        disable: bool = False,
        **tqdm_kwargs: Any,
    ) -> None:
        from tqdm.auto import tqdm

        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable = iterable
        self.tqdm = tqdm(
            total=total, initial=initial, desc=desc, unit=unit, disable=disable, **tqdm_kwargs
        )
        self.reporter = Reporter(desc, total, initial=initial, unit=unit)
        self.n = initial

    def update(self, n: int = 1) -> None:
        self.n += n
        self.tqdm.update(n)
        self.reporter.update_to(self.n)

    def set_postfix(self, **values: Any) -> None:
        self.tqdm.set_postfix(**values)
        self.reporter.update_to(self.n, ", ".join(f"{k}={v}" for k, v in values.items()))

    def close(self) -> None:
        self.tqdm.close()
        self.reporter.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("this progress bar wraps no iterable")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()


def progress_bar(iterable: Iterable[Any] | None = None, **kwargs: Any) -> ProgressBar:
    """A :class:`ProgressBar`: ``progress_bar(items, desc="round trip")`` or
    ``progress_bar(total=n, desc="flow training")``; other keywords go to tqdm."""
    return ProgressBar(iterable, **kwargs)


def read_events(path: str | Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The whole lines appended to ``path`` after byte ``offset``, parsed, and the offset after
    the last whole line (a line still being written is left for the next call). Lines that do
    not parse are skipped. A missing file gives no events."""
    try:
        with Path(path).open("rb") as stream:
            stream.seek(offset)
            data = stream.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events = []
    for line in data[:end].splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "bar" in event:
            events.append(event)
    return events, offset + end


def format_duration(seconds: float) -> str:
    """``42 s``, ``3:05`` (minutes:seconds) or ``1:02:05`` (hours)."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}:{secs:02d}"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def describe(event: dict[str, Any]) -> str:
    """One line for one event: work, count, percentage, postfix, elapsed and time left."""
    n, total, unit = event["n"], event.get("total"), event.get("unit", "it")
    parts = [f"{event['desc']}: {n:,}" + (f"/{total:,}" if total else "") + f" {unit}"]
    if total:
        parts[0] += f" ({100 * n / total:.0f}%)"
    if event.get("postfix"):
        parts.append(event["postfix"])
    elapsed = float(event.get("elapsed", 0.0))
    parts.append(f"{format_duration(elapsed)} elapsed")
    done_here = n - event.get("initial", 0)
    if event.get("done"):
        parts.append("done")
    elif total and done_here > 0 and elapsed > 0:
        parts.append(f"~{format_duration((total - n) * elapsed / done_here)} left")
    return " · ".join(parts)


class Display:
    """Prints progress events as lines: in place on a terminal, appended sparingly otherwise.

    Args:
        stream: Where to print (default ``sys.stdout``).
        interactive: Rewrite one line in place (default: whether ``stream`` is a terminal).
        append_every: When not interactive, seconds between two lines of one bar (its last
            state is always printed).
        min_seconds: Work that ends within this many seconds leaves no line (a terminal shows
            it in place while it runs), so short loops do not flood a log.
        indent: Prefix of every line.
        clock: Seconds, monotonic (a test passes a fake one).
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        interactive: bool | None = None,
        append_every: float = 30.0,
        min_seconds: float = 5.0,
        indent: str = "       ",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        if interactive is None:
            interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interactive = interactive
        self.append_every = append_every
        self.min_seconds = min_seconds
        self.indent = indent
        self._clock = clock
        self._printed: dict[str, float] = {}  # bar -> when its last line was printed
        self._open_line = False  # interactive: a line without its newline is on screen
        self.finished: dict[str, dict[str, Any]] = {}  # bar -> its last event, once done

    def show(self, event: dict[str, Any]) -> None:
        """Take one event."""
        bar, line = event["bar"], self.indent + describe(event)
        done, short = bool(event.get("done")), float(event.get("elapsed", 0)) < self.min_seconds
        if done:
            self.finished[bar] = event
        if self.interactive:
            self.stream.write("\r\x1b[K" + line[:200])
            self._open_line = True
            if done:
                self.stream.write("\r\x1b[K" if short else "\n")
                self._open_line = False
            self.stream.flush()
            return
        if short:
            return
        now = self._clock()
        last = self._printed.get(bar)
        if done or last is None or now - last >= self.append_every:
            self._printed[bar] = now
            self.stream.write(line + "\n")
            self.stream.flush()

    def end_line(self) -> None:
        """End an in-place line left open (before other output)."""
        if self._open_line:
            self.stream.write("\n")
            self.stream.flush()
            self._open_line = False


class Relay(threading.Thread):
    """Reads a progress file while a notebook runs and feeds its events to a :class:`Display`.

    Use as a context manager around the notebook's execution: on exit the events still unread
    are shown and any open line is ended.
    """

    def __init__(self, path: str | Path, display: Display, *, poll: float = 0.5) -> None:
        super().__init__(daemon=True, name="flowllm-kit-progress")
        self.path, self.display, self.poll = Path(path), display, poll
        self._offset = 0
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    def _drain(self) -> None:
        with self._lock:
            events, self._offset = read_events(self.path, self._offset)
            for event in events:
                self.display.show(event)

    def run(self) -> None:
        while not self._stop_event.wait(self.poll):
            self._drain()

    def __enter__(self) -> Relay:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_event.set()
        self.join()
        self._drain()
        self.display.end_line()
