"""``presets``: list the named presets, or print one whole (every component's settings)."""

from __future__ import annotations

import argparse

from flowllm_kit.cli.common import PRESETS
from flowllm_kit.stages.preset import run_preset

__all__ = ["COMMANDS", "presets"]


def _options(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``presets`` to its subparser."""
    parser.add_argument("action", choices=("show", "list"), help="print one preset, or list them")
    parser.add_argument(
        "name", nargs="?", choices=PRESETS, help="the preset to show (default: --preset)"
    )
    parser.add_argument(
        "--flow-choices",
        choices=("kit", "reference"),
        default="kit",
        help="the flow's network and loss: the presets' or the reference code's (%(default)s)",
    )


def presets(args: argparse.Namespace) -> None:
    """Print a preset's settings as JSON (data, LLM, network, training, sampler, evaluation)."""

    if args.action == "list":
        for name in PRESETS:
            preset = run_preset(name)
            print(f"{name}: {preset.data.dataset} ({preset.data.train_split} -> ", end="")
            print(f"{preset.data.eval_split}), {preset.num_samples} crystals per generator")
        return
    print(run_preset(args.name or args.preset, flow_choices=args.flow_choices).to_json())


COMMANDS = {"presets": (presets, _options, "list the presets or print one whole")}
