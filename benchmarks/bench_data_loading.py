"""Time ``load_dataset`` on a real split: first load (fresh cache) and cached loads.

Usage::

    python benchmarks/bench_data_loading.py --root $FLOWLLM_KIT_DATA            # mp_20 val
    python benchmarks/bench_data_loading.py --root $FLOWLLM_KIT_DATA --workers 1 2
    python benchmarks/bench_data_loading.py --root $FLOWLLM_KIT_DATA --full-size   # + 45k rows

Writes a Markdown table to ``benchmarks/results/data_loading.md`` (``--out`` to change).
Each run uses a fresh temporary cache folder, so the first load always parses every CIF.
``--full-size`` also times a 45,231-row file (the size of all of MP-20), made by repeating the
rows of mp_20 val and test, since no train split is stored on the test machines.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd
import pymatgen.core

from flowllm_kit.data import load_dataset_report
from flowllm_kit.data.parse import default_workers

RESULTS = Path(__file__).resolve().parent / "results" / "data_loading.md"


def cpu_model() -> str:
    """``lscpu``'s model name (or the platform's processor string)."""
    try:
        output = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in output.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_loads(name: str, split: str, root: str, *, workers: int, cached_runs: int) -> dict:
    """Load once into an empty cache, then ``cached_runs`` more times; returns timings."""
    previous = os.environ.get("FLOWLLM_KIT_CACHE")
    with tempfile.TemporaryDirectory(prefix="flowllm_kit_bench_") as cache:
        os.environ["FLOWLLM_KIT_CACHE"] = cache
        try:
            return _time_loads(name, split, root, workers=workers, cached_runs=cached_runs)
        finally:
            if previous is None:
                os.environ.pop("FLOWLLM_KIT_CACHE")
            else:
                os.environ["FLOWLLM_KIT_CACHE"] = previous


def _time_loads(name: str, split: str, root: str, *, workers: int, cached_runs: int) -> dict:
    load_before = os.getloadavg()[0]
    cpu_before = cpu_seconds()
    first = load_dataset_report(name, split, root, workers=workers, progress=False)
    first_cpu = cpu_seconds() - cpu_before
    assert not first.from_cache
    cached = []
    for _ in range(cached_runs):
        start = time.perf_counter()
        again = load_dataset_report(name, split, root, progress=False)
        cached.append(time.perf_counter() - start)
        assert again.from_cache and len(again.crystals) == len(first.crystals)
    return {
        "workers": workers,
        "rows": first.num_rows,
        "crystals": len(first.crystals),
        "skipped": len(first.skipped),
        "first": first.seconds,
        "first_cpu": first_cpu,
        "cached": min(cached),
        "load_before": load_before,
    }


def full_size_csv(root: str, folder: Path, rows: int = 45_231) -> Path:
    """A CSV of ``rows`` MP-20 rows (val and test repeated), as ``folder/mp_20_full/train.csv``."""
    parts = [pd.read_csv(Path(root) / "mp_20" / f"{split}.csv") for split in ("val", "test")]
    both = pd.concat(parts, ignore_index=True)
    repeats = -(-rows // len(both))
    frame = pd.concat([both] * repeats, ignore_index=True).iloc[:rows]
    path = folder / "mp_20_full" / "train.csv"
    path.parent.mkdir(parents=True)
    frame.to_csv(path, index=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="mp_20")
    parser.add_argument("--split", default="val")
    parser.add_argument(
        "--root", default=os.environ.get("FLOWLLM_KIT_DATA"), help="data root ($FLOWLLM_KIT_DATA)"
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[default_workers()])
    parser.add_argument("--cached-runs", type=int, default=3)
    parser.add_argument("--full-size", action="store_true", help="also time 45,231 rows")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.root is None:
        parser.error("give --root or set FLOWLLM_KIT_DATA to the folder holding mp_20/")

    runs = []
    for workers in args.workers:
        run = time_loads(
            args.name, args.split, args.root, workers=workers, cached_runs=args.cached_runs
        )
        print(run, flush=True)
        runs.append({"file": f"{args.name}/{args.split}.csv", **run})
    if args.full_size:
        with tempfile.TemporaryDirectory(prefix="flowllm_kit_bench_data_") as folder:
            path = full_size_csv(args.root, Path(folder))
            size_mb = path.stat().st_size / 1e6
            run = time_loads(
                str(path),
                "train",
                args.root,
                workers=default_workers(),
                cached_runs=args.cached_runs,
            )
            print(run, flush=True)
            runs.append({"file": f"45k rows, {size_mb:.0f} MB (val+test repeated)", **run})

    lines = [
        "# Data loading benchmark",
        "",
        f"`load_dataset({args.name!r}, {args.split!r}, root=...)`, measured by "
        "`benchmarks/bench_data_loading.py` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        f"- Machine: {cpu_model()}, {os.cpu_count()} CPU cores "
        f"({default_workers()} usable), shared with other jobs (1-min load average before "
        "each run is in the table).",
        f"- Python {platform.python_version()}, pymatgen {pymatgen.core.__version__}.",
        "- First load: fresh cache folder, so hashing, CSV reading, CIF parsing, Niggli "
        "reduction, checks and writing the cache entry. Cached: best of "
        f"{args.cached_runs} loads that hit the cache (hash the CSV, read the .npz, build "
        "the `Crystal` objects). First-load CPU: user + system seconds of this process and "
        "its parsing workers, which other jobs on the machine do not inflate; with all cores "
        "free, first-load wall time is about CPU / workers.",
        "",
        "| file | workers | rows | crystals | skipped | first load (s) | first load CPU (s) "
        "| cached load (s) | load avg |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        lines.append(
            f"| {run['file']} | {run['workers']} | {run['rows']:,} | {run['crystals']:,} "
            f"| {run['skipped']} "
            f"| {run['first']:.1f} | {run['first_cpu']:.1f} | {run['cached']:.2f} "
            f"| {run['load_before']:.1f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
