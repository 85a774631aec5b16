"""The viewer's Dash app: a crystal in 3D (crystal-toolkit), a slider along its flow trajectory,
the LLM text it came from and its evaluation row.

The page has a system and a crystal dropdown, a slider over the crystal's recorded states
(t = 0, its start, to t = 1, the sampled crystal), a line with the state's flow time and
lattice, crystal-toolkit's :class:`StructureMoleculeComponent`, the LLM text and the row of
``evaluation/<system>/per_structure.csv``. The callbacks only ask :mod:`flowllm_kit.viewer.data`.

Example::

    >>> from flowllm_kit.viewer.app import build_app
    >>> from flowllm_kit.viewer.data import load_run
    >>> build_app(load_run("runs/smoke")).run(port=8050)  # or: python -m flowllm_kit view ...
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowllm_kit.run import RunFolder
from flowllm_kit.viewer.data import (
    Frame,
    RunView,
    crystal_frames,
    crystal_text,
    describe_frame,
    evaluation_row,
    frame_at,
    load_run,
)

if TYPE_CHECKING:
    from dash import Dash
    from pymatgen.analysis.graphs import StructureGraph
    from pymatgen.core import Structure

__all__ = [
    "CRYSTAL_ID",
    "EVALUATION_ID",
    "FRAME_ID",
    "FRAME_INFO_ID",
    "NOTE_ID",
    "STRUCTURE_ID",
    "SYSTEM_ID",
    "TEXT_ID",
    "build_app",
    "crystal_options",
    "serve",
    "slider_marks",
    "structure_graph",
]

# Ids of the page's elements (the browser test finds them by these).
SYSTEM_ID = "system"
CRYSTAL_ID = "crystal"
FRAME_ID = "frame"
FRAME_INFO_ID = "frame-info"
NOTE_ID = "trajectory-note"
TEXT_ID = "llm-text"
EVALUATION_ID = "evaluation"
STRUCTURE_ID = "structure"  # crystal-toolkit prefixes it: "CTstructure", "CTstructure_scene"

_LABELS = {
    "flowllm": "FlowLLM",
    "flowmm": "FlowMM (de novo)",
    "flowmm_csp": "FlowMM-CSP",
    "flowllm_types": "FlowLLM-Types",
}
_BOX = {"border": "1px solid #ddd", "borderRadius": "6px", "padding": "0.6em 1em"}


def structure_graph(structure: Structure) -> StructureGraph:
    """The structure with CrystalNN bonds, as crystal-toolkit draws it (no bonds if CrystalNN
    fails, as crystal-toolkit itself does).

    The component is handed a graph rather than a Structure because crystal-toolkit
    2026.7.20 builds graphs with ``StructureGraph.with_local_env_strategy``, which the
    installed pymatgen no longer has (it is ``from_local_env_strategy`` now); given a graph,
    the component draws it as is.
    """
    from pymatgen.analysis.graphs import StructureGraph
    from pymatgen.analysis.local_env import CrystalNN

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # CrystalNN warns on odd geometries, e.g. at t = 0
            return StructureGraph.from_local_env_strategy(structure, CrystalNN())
    except Exception:  # any failure: draw the atoms without bonds
        return StructureGraph.from_empty_graph(structure)


def crystal_options(run: RunView, system: str) -> list[dict[str, Any]]:
    """Dropdown options for the crystals of ``system``: index, formula, id, and whether a
    trajectory was recorded."""
    samples = run.system(system)
    return [
        {
            "label": f"{index}: {crystal.formula} ({crystal.id or 'no id'})"
            + (" · trajectory" if index < samples.num_recorded else ""),
            "value": index,
        }
        for index, crystal in enumerate(samples.crystals)
    ]


def slider_marks(frames: Sequence[Frame], *, count: int = 5) -> dict[int, str]:
    """About ``count`` slider labels (flow times), always at the first and last state."""
    last = len(frames) - 1
    every = max(1, math.ceil(last / max(count - 1, 1)))
    steps = sorted({*range(0, last + 1, every), last})
    return {step: f"{frames[step].time:.2f}" for step in steps}


def _trajectory_note(run: RunView, system: str, index: int, frames: Sequence[Frame]) -> str:
    """What the slider runs over, for the line under it."""
    samples = run.system(system)
    trajectory = RunFolder(run.folder).trajectory(system)
    if index < samples.num_recorded:
        return f"{len(frames)} recorded states, from {trajectory}"
    recorded = f"only the first {samples.num_recorded} {system} crystals have one"
    if not samples.num_recorded:
        recorded = f"none in {trajectory}, or it belongs to other samples"
    shown = "its LLM start and the sample" if len(frames) > 1 else "the sample only"
    return f"no recorded trajectory ({recorded}): {shown}"


def _evaluation_table(run: RunView, system: str, index: int) -> Any:
    """The evaluation row as a two-column table, or the words "not evaluated"."""
    from dash import html

    row = evaluation_row(run, system, index)
    if row is None:
        table = RunFolder(run.folder).per_structure(system)
        missing = f"no row for crystal {index} in" if table.is_file() else "no"
        return html.P(f"not evaluated ({missing} {table})")

    def shown(value: Any) -> str:
        return "–" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)

    rows = [
        html.Tr([html.Th(key, style={"textAlign": "left"}), html.Td(shown(value))])
        for key, value in row.items()
    ]
    return html.Table(rows, style={"borderSpacing": "0.8em 0.1em"})


def _text_block(run: RunView, system: str, index: int) -> Any:
    """The LLM text and its source, or why there is none."""
    from dash import html

    found = crystal_text(run, system, index)
    if found is None:
        return html.P(f"{_LABELS[system]} starts from the uniform base: no LLM text")
    return [html.Pre(found.text, style={"margin": "0"}), html.Small(found.source)]


def build_app(run: RunView, *, system: str | None = None) -> Dash:
    """The viewer's Dash app for a loaded run folder.

    Args:
        run: From :func:`flowllm_kit.viewer.data.load_run`.
        system: The system shown first (default: the first of the run's).

    Returns:
        The app; ``app.run(host=..., port=...)`` serves it.

    Raises:
        RunFolderError: If ``system`` is not in the run folder.
    """
    import crystal_toolkit.components as ctc
    from crystal_toolkit import CrystalToolkitPlugin
    from dash import Dash, Input, Output, dcc, html
    from flask_caching import Cache

    system = run.system(system).name if system else next(iter(run.systems))
    frames_of = functools.lru_cache(maxsize=64)(functools.partial(crystal_frames, run))
    # Empty at first, like everything the callbacks fill when the page loads: a scene given at
    # construction stays blank in headless Chromium until its data changes (crystal-toolkit
    # 2026.7.20, dash-mp-components 0.5.2).
    structure = ctc.StructureMoleculeComponent(
        None,
        id=STRUCTURE_ID,
        show_settings=False,  # its bonding and unit-cell choices need the graph rebuilt
        show_export_button=False,
    )
    systems = [{"label": _LABELS[name], "value": name} for name in run.systems]
    controls = html.Div(
        [
            html.Label(
                ["system", dcc.Dropdown(systems, system, id=SYSTEM_ID, clearable=False)],
                style={"width": "14em"},
            ),
            html.Label(
                ["crystal", dcc.Dropdown([], 0, id=CRYSTAL_ID, clearable=False)],
                style={"width": "28em"},
            ),
        ],
        style={"display": "flex", "gap": "1.5em", "marginBottom": "1em"},
    )
    slider = html.Div(
        [
            html.Span("flow time t", style={"whiteSpace": "nowrap"}),
            html.Div(
                dcc.Slider(0, 0, 1, value=0, id=FRAME_ID, included=False), style={"flex": "1"}
            ),
        ],
        style={"display": "flex", "gap": "1em", "maxWidth": "60em"},
    )
    side = html.Div(
        [
            html.H4("LLM text"),
            html.Div(id=TEXT_ID, style=_BOX),
            html.H4("Evaluation"),
            html.Div(id=EVALUATION_ID, style=_BOX),
        ],
        style={"flex": "1", "minWidth": "20em"},
    )
    layout = html.Div(
        [
            html.H2("flowllm-kit · crystals along their flow"),
            html.P(f"run folder: {run.folder.resolve()}", style={"color": "#666"}),
            controls,
            slider,
            html.P(id=FRAME_INFO_ID),
            html.P(id=NOTE_ID, style={"color": "#666"}),
            html.Div(
                [structure.layout(size="520px"), side],
                style={"display": "flex", "gap": "2em", "alignItems": "flex-start"},
            ),
        ],
        style={"fontFamily": "sans-serif", "margin": "1em 2em"},
    )
    # An explicit cache: the plugin's default names flask-caching's "simple" backend, which
    # flask-caching 2.5 no longer has. use_default_css=False: Bulma and Font Awesome come from
    # CDNs, which a closed network (or an offline laptop) cannot reach; the page needs neither.
    cache = Cache(config={"CACHE_TYPE": "SimpleCache", "CACHE_THRESHOLD": 2000})
    plugin = CrystalToolkitPlugin(layout=layout, cache=cache, use_default_css=False)
    app = Dash(__name__, title="flowllm-kit viewer", plugins=[plugin])

    @app.callback(
        Output(CRYSTAL_ID, "options"), Output(CRYSTAL_ID, "value"), Input(SYSTEM_ID, "value")
    )
    def choose_system(name: str) -> tuple[list[dict[str, Any]], int]:
        return crystal_options(run, name), 0

    @app.callback(
        Output(FRAME_ID, "max"),
        Output(FRAME_ID, "marks"),
        Output(FRAME_ID, "value"),
        Output(FRAME_ID, "disabled"),
        Output(NOTE_ID, "children"),
        Output(TEXT_ID, "children"),
        Output(EVALUATION_ID, "children"),
        Input(SYSTEM_ID, "value"),
        Input(CRYSTAL_ID, "value"),
    )
    def choose_crystal(name: str, index: int) -> tuple[Any, ...]:
        frames = frames_of(name, index)
        return (
            len(frames) - 1,
            slider_marks(frames),
            0,
            len(frames) == 1,
            _trajectory_note(run, name, index, frames),
            _text_block(run, name, index),
            _evaluation_table(run, name, index),
        )

    @app.callback(
        Output(structure.id(), "data"),
        Output(FRAME_INFO_ID, "children"),
        Input(SYSTEM_ID, "value"),
        Input(CRYSTAL_ID, "value"),
        Input(FRAME_ID, "value"),
    )
    def choose_frame(name: str, index: int, step: int | None) -> tuple[Any, str]:
        frames = frames_of(name, index)
        frame = frame_at(frames, step)
        return structure_graph(frame.crystal.to_structure()), describe_frame(frame, len(frames))

    return app


def serve(
    run_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8050,
    system: str | None = None,
    debug: bool = False,
) -> None:
    """Load a run folder and serve the viewer until interrupted.

    Args:
        run_dir: The run folder.
        host: Interface to listen on (``0.0.0.0``: every interface).
        port: TCP port.
        system: The system shown first (default: the first found).
        debug: Dash's debug mode (error pop-ups, callback graph; reloads on code changes).

    Raises:
        RunFolderError: If the folder or ``system`` is missing (nothing is served).
    """
    run = load_run(run_dir)
    app = build_app(run, system=system)
    print(f"viewer of {run.folder} ({', '.join(run.systems)}) on http://{host}:{port}/")
    app.run(host=host, port=port, debug=debug)
