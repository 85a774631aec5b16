"""A Dash viewer of a run folder: each generated crystal in 3D (crystal-toolkit), a slider
along its flow trajectory from the start (the LLM's crystal, for FlowLLM) to the sample, the
LLM text it came from and its evaluation row.

Serve it with ``python -m flowllm_kit view RUN_DIR`` (or ``python -m flowllm_kit.viewer``);
it needs the ``viewer`` extra (``pip install 'flowllm-kit[viewer]'``). Modules:
:mod:`~.data` (the run folder as plain data, no Dash; importable without the extra) and
:mod:`~.app` (layout and callbacks, :func:`~.app.build_app`, :func:`~.app.serve`).
"""

from __future__ import annotations

from flowllm_kit.viewer.data import (
    SYSTEMS,
    CrystalText,
    Frame,
    RunFolderError,
    RunView,
    SystemSamples,
    crystal_frames,
    crystal_text,
    describe_frame,
    evaluation_row,
    frame_at,
    frame_structure,
    load_run,
)

__all__ = [
    "SYSTEMS",
    "CrystalText",
    "Frame",
    "RunFolderError",
    "RunView",
    "SystemSamples",
    "crystal_frames",
    "crystal_text",
    "describe_frame",
    "evaluation_row",
    "frame_at",
    "frame_structure",
    "load_run",
]
