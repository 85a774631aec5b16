"""Shared pieces of the GPU checks (benchmarks/bench_gpu.py): the device description, timing,
the results writer, and ``prepare`` (MP-20 crystals as JSON lines for the GPU call)."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flowllm_kit.crystal.io import write_crystals  # noqa: E402


def device_lines() -> list[str]:
    import transformers

    lines = [
        f"- host: {platform.node()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}"
    ]
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        lines.append(
            f"- GPU: {props.name}, {props.multi_processor_count} SMs, "
            f"{props.total_memory / 2**30:.0f} GiB"
        )
    else:
        lines.append("- no GPU: CPU run (numbers are not GPU numbers)")
    return lines


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def seconds_of(fn, *, repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time of ``repeats`` calls, the device synchronized around each."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def write(out: Path, name: str, lines: list[str], numbers: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    (out / f"{name}.json").write_text(json.dumps(numbers, indent=2, default=float))
    print("\n".join(lines), flush=True)


# --- prepare ---------------------------------------------------------------------------------
def prepare(folder: Path) -> None:
    from flowllm_kit.data import load_dataset

    folder.mkdir(parents=True, exist_ok=True)
    for split in ("val", "test"):
        path = folder / f"mp20_{split}.jsonl"
        path.unlink(missing_ok=True)
        write_crystals(load_dataset("mp_20", split, progress=False), path)
        print(f"{path}: {path.stat().st_size / 2**20:.1f} MiB")
