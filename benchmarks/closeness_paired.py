"""What limits FlowLLM's closeness to the relaxed state: its crystals against their own LLM starts.

FlowLLM refines the LLM's crystals one by one, so in a run whose ``llm_only`` system is the LLM
crystals that FlowLLM started from (the ``recipe`` command's samples and the notebook series
both number them alike: ``llm-7`` is the refinement of ``llm_only-7``), each crystal can be
compared with its own start. The two systems' match rates count different crystals: FlowLLM's
includes the ones the flow made valid, which the LLM's leaves out. This script splits them::

    python benchmarks/closeness_paired.py runs/kit-v2 --out benchmarks/results/closeness_paired.md

It reads ``<run>/evaluation/{flowllm,llm_only}/per_structure.csv`` (written by ``python -m
flowllm_kit evaluate``; no model runs here) and writes, with 95% intervals:

* structural validity before and after the flow, crystal by crystal;
* on the crystals relaxed in both systems, the match rate, RMSD and energy drop of the LLM
  crystal and of its refinement, and their paired differences (bootstrap over the crystals);
* the match rate of the crystals only FlowLLM's system relaxed (the ones the flow repaired),
  and how the overall rates decompose into the two groups.
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from machine import commit  # benchmarks/machine.py

from flowllm_kit.evaluate.intervals import Estimate, bootstrap_estimate, rate_estimate
from flowllm_kit.run import RunFolder

ROOT = Path(__file__).resolve().parents[1]


def paired(run_dir: Path, refined: str, start: str) -> pd.DataFrame:
    """One row per LLM crystal: the ``start`` system's columns (suffix ``_start``) beside those
    of its refinement in ``refined`` (suffix ``_refined``), matched by the number in the id."""
    frames = []
    for system, suffix in ((refined, "_refined"), (start, "_start")):
        path = RunFolder(run_dir).per_structure(system)
        if not path.is_file():
            raise SystemExit(f"{path} is missing: evaluate {system!r} in {run_dir} first")
        frame = pd.read_csv(path)
        frame.index = frame["id"].str.rsplit("-", n=1).str[-1].astype(int)
        frames.append(frame.add_suffix(suffix))
    both = frames[0].join(frames[1], how="inner")
    if len(both) < len(frames[0]) or len(both) < len(frames[1]):
        raise SystemExit(f"{refined} and {start} do not hold the same crystal numbers")
    same = both["formula_refined"] == both["formula_start"]
    if not same.all():  # a refinement keeps the atoms: anything else is not a pair
        raise SystemExit(
            f"{int((~same).sum())} {refined} crystals have another formula than the {start} "
            f"crystal of the same number (first: {both.index[~same][0]}): not refinements of it"
        )
    for suffix in ("_refined", "_start"):
        relaxed = both[f"steps{suffix}"].notna() & both[f"error{suffix}"].isna()
        both[f"relaxed{suffix}"] = relaxed
        both[f"matched{suffix}"] = relaxed & both[f"relaxed_rms{suffix}"].notna()
        both[f"drop{suffix}"] = (
            both[f"initial_energy_per_atom{suffix}"] - both[f"final_energy_per_atom{suffix}"]
        )
    return both


def mean_difference(first: np.ndarray, second: np.ndarray) -> Estimate:
    """mean(first - second) over paired crystals, with the bootstrap over the pairs."""
    return bootstrap_estimate(
        lambda a, b: float(np.mean(a) - np.mean(b)), np.asarray(first), np.asarray(second)
    )


def cell(estimate: Estimate, digits: int = 1) -> str:
    return f"{estimate:.{digits}f}" + (f" (k = {estimate.k} of {estimate.n})" if estimate.k else "")


def report(both: pd.DataFrame, refined: str, start: str) -> list[str]:
    """The results file's tables, from :func:`paired`'s rows."""
    n = len(both)
    valid = pd.crosstab(
        both["structurally_valid_start"].map({True: "valid", False: "invalid"}),
        both["structurally_valid_refined"].map({True: "valid", False: "invalid"}),
    )
    lines = [
        f"## Structural validity, crystal by crystal ({n} LLM crystals)",
        "",
        f"| {start} \\ {refined} | valid | invalid |",
        "|---|---|---|",
    ]
    for row in ("valid", "invalid"):
        counts = [int(valid.at[row, col]) if row in valid.index and col in valid else 0
                  for col in ("valid", "invalid")]  # fmt: skip
        lines.append(f"| {row} | {counts[0]} | {counts[1]} |")

    common = both[both["relaxed_start"] & both["relaxed_refined"]]
    only_refined = both[both["relaxed_refined"] & ~both["relaxed_start"]]
    only_start = both[both["relaxed_start"] & ~both["relaxed_refined"]]
    matched = pd.crosstab(common["matched_start"], common["matched_refined"])

    def count(a: bool, b: bool) -> int:
        return int(matched.at[a, b]) if a in matched.index and b in matched else 0

    rate = {s: rate_estimate(common[f"matched_{s}"]) for s in ("start", "refined")}
    overall = {s: rate_estimate(both.loc[both[f"relaxed_{s}"], f"matched_{s}"])
               for s in ("start", "refined")}  # fmt: skip
    drop = {s: bootstrap_estimate(np.mean, common[f"drop_{s}"].to_numpy())
            for s in ("start", "refined")}  # fmt: skip
    both_matched = common[common["matched_start"] & common["matched_refined"]]
    rms = {s: bootstrap_estimate(np.mean, both_matched[f"relaxed_rms_{s}"].to_numpy())
           for s in ("start", "refined")}  # fmt: skip
    change = {
        "match": mean_difference(
            100.0 * common["matched_refined"], 100.0 * common["matched_start"]
        ),
        "drop": mean_difference(common["drop_refined"], common["drop_start"]),
        "rms": mean_difference(
            both_matched["relaxed_rms_refined"], both_matched["relaxed_rms_start"]
        ),
    }
    alone = {"start": rate_estimate(only_start["matched_start"]),
             "refined": rate_estimate(only_refined["matched_refined"])}  # fmt: skip
    lines += [
        "",
        "## Closeness to the relaxed state",
        "",
        "Relaxed: the crystals the evaluation relaxed (structurally and compositionally valid) "
        "without error. Matched: the relaxed crystal matches the generated one (StructureMatcher "
        "ltol 0.3, stol 0.5, angle_tol 10).",
        "",
        f"| | {start} (the LLM crystal) | {refined} (its refinement) | difference |",
        "|---|---|---|---|",
        f"| match rate %, all relaxed crystals of the system | {cell(overall['start'])} | "
        f"{cell(overall['refined'])} | |",
        f"| match rate %, the {len(common)} relaxed in both | {cell(rate['start'])} | "
        f"{cell(rate['refined'])} | "
        f"{change['match']:.1f} |",
        f"| energy drop on relaxation eV/atom, the {len(common)} relaxed in both | "
        f"{drop['start']:.2f} | {drop['refined']:.2f} | "
        f"{change['drop']:.2f} |",
        f"| RMSD to the relaxed crystal, the {len(both_matched)} matched in both | "
        f"{rms['start']:.3f} | {rms['refined']:.3f} | "
        f"{change['rms']:.3f} |",
        f"| match rate %, relaxed in one system only | {cell(alone['start'])} "
        f"| {cell(alone['refined'])} | |",
        "",
        f"Of the {len(common)} relaxed in both: {count(True, True)} match before and after the "
        f"flow, {count(False, True)} match only after it, {count(True, False)} only before it, "
        f"{count(False, False)} neither.",
        f"{len(only_refined)} crystals were relaxed only as {refined} (the flow made them valid), "
        f"{len(only_start)} only as {start}.",
    ]  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="an evaluated run folder")
    parser.add_argument("--refined", default="flowllm", help="(%(default)s)")
    parser.add_argument("--start", default="llm_only", help="(%(default)s)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "closeness_paired.md"
    )
    args = parser.parse_args()
    both = paired(args.run_dir, args.refined, args.start)
    lines = [
        f"# {args.refined} against its own LLM starts (benchmarks/closeness_paired.py)",
        "",
        f"Written {date.today().isoformat()} at commit `{commit()}` from the evaluation in "
        f"`{args.run_dir.name}/evaluation` (its per-crystal tables; nothing is recomputed). "
        "Value [95% interval]: Wilson for rates, the bootstrap over the crystals for means and "
        "for paired differences.",
        "",
        *report(both, args.refined, args.start),
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
