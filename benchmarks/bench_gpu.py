"""The kit's GPU checks, prepared to run as one short call on a lent GPU machine.

Three parts, each writing a markdown section (and JSON numbers) into ``--out``:

- ``flow``: the velocity network on the GPU. A plain matmul's FLOP/s (fp32, TF32, bf16) as the
  ceiling; forward crystal·steps/s of each preset, of the paper preset under TF32 and bf16, and
  of the reference-style dense forward (benchmarks/bench_flow.py) with the same weights,
  checked to agree; **10,000 MP-20-sized crystals (atom counts drawn from MP-20 test)
  integrated over 250 Euler steps** with the paper preset, timed end to end; training steps/s.
- ``llm-train``: a scratch preset (``--scratch``, default ``gpu``: about 85 M parameters;
  ``--tie`` ties its embeddings) trained for a fixed wall time (or ``--max-steps``) on MP-20 val
  with the kit's ``finetune`` (``--conditioning``, default ``formula``: the formula alone or
  nothing); then how often a held-out MP-20 test formula is answered with exactly that
  composition, its reduced formula or its elements (no constrained decoding), the
  parse rate of unconditional samples and the perplexity of MP-20 test texts, each written as
  soon as it is measured.
- ``llm-speed``: the demo-sized LLM (random weights, end of sequence masked so that every row
  generates the same tokens) sampled by plain ``model.generate`` (dynamic cache) and by the
  kit's ``generate_texts`` (static cache, which transformers compiles on a GPU), at batch
  sizes 1, 16, 64 and 256.

``prepare`` runs here (it needs pymatgen): it writes MP-20 val and test crystals as JSON lines
into a folder that the GPU call carries, since the data folder does not travel.

Usage::

    python benchmarks/bench_gpu.py prepare .gpu
    python benchmarks/bench_gpu.py flow --data .gpu --out OUT
    python benchmarks/bench_gpu.py llm-train --data .gpu --out OUT --seconds 150
    python benchmarks/bench_gpu.py llm-speed --out OUT

Each part lives in its own file beside this one (``gpu_common.py``, ``gpu_flow.py``,
``gpu_llm_train.py``, ``gpu_llm_speed.py``). Every part also runs on a CPU with ``--tiny``
(small sizes), which is how it is checked before a GPU call; numbers from such a run mean
nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the parts: gpu_*.py beside this file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["prepare", "flow", "llm-train", "llm-speed"])
    parser.add_argument("folder", nargs="?", type=Path, help="prepare: where to write")
    parser.add_argument("--data", type=Path, default=Path(".gpu"))
    parser.add_argument("--out", type=Path, default=Path("gpu_out"))
    parser.add_argument("--run-dir", type=Path, default=Path("/tmp/gpu_llm_run"))
    parser.add_argument("--seconds", type=float, default=150.0, help="llm-train wall budget")
    parser.add_argument("--max-steps", type=int, default=None, help="llm-train: fixed steps")
    parser.add_argument("--tiny", action="store_true", help="small sizes, to check on a CPU")
    parser.add_argument("--scratch", default="gpu", help="llm-train: scratch model preset")
    parser.add_argument("--tie", action="store_true", help="llm-train: tie the embeddings")
    parser.add_argument(
        "--conditioning", default="formula", help="llm-train: prompts of the training texts"
    )
    args = parser.parse_args()
    from gpu_common import prepare
    from gpu_flow import flow_part
    from gpu_llm_speed import llm_speed_part
    from gpu_llm_train import llm_train_part

    if args.part == "prepare":
        prepare(args.folder or args.data)
    elif args.part == "flow":
        flow_part(args)
    elif args.part == "llm-train":
        llm_train_part(args)
    else:
        llm_speed_part(args)


if __name__ == "__main__":
    main()
