"""Seconds per structure for each evaluation metric family on this machine.

Usage::

    python benchmarks/bench_evaluate.py [--data $FLOWLLM_KIT_DATA] [--relax 24]
        [--fingerprints 40] [--sun-sizes 100 500 2000] [--out benchmarks/results/evaluate.md]

"Generated" crystals are stand-ins: MP-20 test crystals with atoms moved by 0.05 Å (Gaussian)
and the cell strained by 1%, plus exact duplicates, so every code path does real work.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from flowllm_kit import evaluate

REPO = Path(__file__).resolve().parents[1]


def read(csv: Path, n: int | None = None) -> tuple[pd.DataFrame, list[Structure]]:
    frame = pd.read_csv(csv, nrows=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return frame, [Structure.from_str(cif, fmt="cif") for cif in frame["cif"]]


def perturbed(structures: list[Structure], seed: int = 0) -> list[Structure]:
    rng = np.random.default_rng(seed)
    out = []
    for s in structures:
        cart = s.cart_coords + rng.normal(0, 0.05, (len(s), 3))
        copy = Structure(s.lattice, s.species, cart, coords_are_cartesian=True)
        copy.apply_strain(0.01)
        out.append(copy)
    return out


def timed(function: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def chgnet_speed(structures: list[Structure]) -> tuple[list[str], float]:
    """CHGNet relaxation speed on CPU: StructOptimizer against the kit's engine, one process.

    ``benchmarks/bench_relax.py`` measures the engine in depth (batch sizes, workers).
    """
    import contextlib
    import io

    import torch
    from chgnet.model import CHGNet, StructOptimizer
    from threadpoolctl import threadpool_limits

    from flowllm_kit.relax import load_chgnet

    out = []
    with contextlib.redirect_stdout(io.StringIO()):
        model = CHGNet.load(verbose=False)
    rattled = perturbed(structures[:4], seed=1)
    # CHGNet's own StructOptimizer with library defaults (2 torch threads, threaded BLAS)
    t, runs = timed(
        lambda: [StructOptimizer(model=model).relax(s, steps=1500, verbose=False) for s in rattled]
    )
    steps = sum(len(r["trajectory"].energies) - 1 for r in runs)
    out.append(f"- StructOptimizer, library defaults: {t / max(steps, 1):.3f} s per FIRE step.")
    load_chgnet("0.3.0", "cpu")  # loaded once per process: keep it out of the timing
    config = evaluate.RelaxConfig(num_workers=1, device="cpu")
    t, ours = timed(lambda: evaluate.relax_structures(rattled, config=config, progress=False))
    # per structure, hence per FIRE step: batched steps advance every structure at once
    per_step = t / max(sum(r.steps for r in ours), 1)
    gap = max(
        abs(r.final_energy_per_atom - s["trajectory"].energies[-1] / len(structure))
        for r, s, structure in zip(ours, runs, rattled, strict=True)
    )
    out.append(
        f"- `relax_structures` (torch-sim FIRE + Fréchet cell filter, batched, 1 torch thread, "
        f"BLAS 1 thread), one process: {per_step:.3f} s per structure-step; final energies "
        f"differ from StructOptimizer's by at most {gap * 1000:.2f} meV/atom."
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1, user_api="blas"):
        model.predict_structure(structures[:2], task="efs", batch_size=2)  # warm up
        t_one, _ = timed(lambda: [model.predict_structure(s, task="efs") for s in structures])
        t_all, _ = timed(
            lambda: model.predict_structure(structures, task="efs", batch_size=len(structures))
        )
    torch.set_num_threads(threads)
    out.append(
        f"- CHGNet energy+forces+stress, 1 thread: {t_one / len(structures):.3f} s per crystal "
        f"one at a time, {t_all / len(structures):.3f} s per crystal in one batch of "
        f"{len(structures)} (CHGNet's own predict_structure)."
    )
    return out, per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=os.environ.get("FLOWLLM_KIT_DATA"), help="$FLOWLLM_KIT_DATA"
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/evaluate.md")
    parser.add_argument("--relax", type=int, default=24, help="test crystals to relax")
    parser.add_argument("--fingerprints", type=int, default=40)
    parser.add_argument("--sun-sizes", type=int, nargs="+", default=[100, 500, 2000])
    args = parser.parse_args()
    if args.data is None:
        parser.error("give --data or set FLOWLLM_KIT_DATA to the folder holding mp_20/")
    rows: list[tuple[str, int, float, str]] = []  # metric, n, seconds per structure, note
    lines: list[str] = []

    test_frame, test = read(args.data / "mp_20" / "test.csv")
    val_frame, val = read(args.data / "mp_20" / "val.csv")
    n_max = max(args.sun_sizes)
    base = test[: n_max * 9 // 10]
    generated = perturbed(base) + base[: n_max - len(base)]  # 10% exact duplicates

    sample = generated[:2000]
    t, valid = timed(lambda: evaluate.structural_validity(sample))
    rows.append(("structural validity", len(sample), t / len(sample), f"{sum(valid)} valid"))
    t, status = timed(lambda: evaluate.composition_status(sample))
    rows.append(
        ("compositional validity (SMACT)", len(sample), t / len(sample), str(Counter(status)))
    )
    t, dist = timed(lambda: evaluate.property_distances(sample, test))
    note = f"wdist density {dist.density:.3f}, N_el {dist.num_elements:.3f} (vs all test)"
    rows.append(
        ("density + N-ary distances", len(sample) + len(test), t / (len(sample) + len(test)), note)
    )

    few = generated[: args.fingerprints]
    t1, _ = timed(lambda: evaluate.fingerprints(few, processes=1))
    rows.append(("fingerprints (CrystalNN + Magpie), 1 process", len(few), t1 / len(few), ""))
    t2, fp = timed(lambda: evaluate.fingerprints(few, processes=2))
    rows.append(("fingerprints, 2 processes", len(few), t2 / len(few), "includes pool start"))
    ref_fp = evaluate.fingerprints(test[: args.fingerprints], processes=2)
    t, cov = timed(lambda: evaluate.coverage(fp, ref_fp))
    note = f"recall {cov.recall:.2f}, precision {cov.precision:.2f} (perturbed vs originals)"
    rows.append(("coverage from fingerprints", len(few), t / len(few), note))

    sun_lines = [
        "| n | uniqueness s | novelty vs val (9,047) s | unique | novel |",
        "|---|---|---|---|---|",
    ]
    for n in args.sun_sizes:
        part = generated[:n]
        tu, unique = timed(lambda part=part: evaluate.uniqueness(part))
        tn, novel = timed(lambda part=part: evaluate.novelty(part, val))
        sun_lines.append(f"| {n} | {tu:.1f} | {tn:.1f} | {sum(unique)} | {sum(novel)} |")
        rows.append((f"uniqueness (n={n})", n, tu / n, ""))
        rows.append((f"novelty vs val (n={n})", n, tn / n, ""))

    refs = evaluate.load_elemental_references(
        args.data / "hull" / "2023-02-07-mp-elemental-reference-entries.json.gz"
    )
    both = pd.concat([val_frame, test_frame], ignore_index=True)
    t_build, hull = timed(
        lambda: evaluate.HullReference.from_formation_energies(
            both["pretty_formula"], both["formation_energy_per_atom"], refs,
            ids=both["material_id"], source="mp_20 val+test",
        )
    )  # fmt: skip
    by_id = {e.entry_id: e for e in hull.entries}
    test_entries = [by_id[i] for i in test_frame["material_id"]]
    t, dft_hull = timed(
        lambda: hull.e_above_hull_many(
            [e.composition for e in test_entries], [e.energy for e in test_entries]
        )
    )
    rows.append(("E_hull (lazy per-chemsys hull)", len(test_entries), t / len(test_entries), ""))
    on_hull = float(np.mean(dft_hull <= 1e-8))
    lines.append(
        f"- Hull (b) from mp_20 val+test ({len(both)} entries + {len(refs)} elemental "
        f"references), index built in {t_build:.1f} s. With DFT energies, {on_hull:.1%} of the "
        f"{len(test_entries)} MP-20 test materials sit on it (E_hull <= 0); on the MP hull, "
        f"{np.mean(test_frame['e_above_hull'] <= 1e-8):.1%} do (the e_above_hull column)."
    )

    if args.relax:
        chosen = test[: args.relax]
        config = evaluate.RelaxConfig(num_workers=2, device="cpu")
        t, results = timed(lambda: evaluate.relax_structures(chosen, config=config, progress=False))
        steps = sum(r.steps for r in results)
        ok = [r for r in results if r.error is None]
        rows.append(
            ("CHGNet relax (FIRE, fmax 0.1, cell), 2 processes", len(chosen), t / len(chosen),
             f"{steps} steps in all, {t / max(steps, 1):.3f} s per structure-step (wall); "
             f"{len(ok)} ok, {sum(r.converged for r in ok)} converged; "
             "wall time includes starting 2 worker processes")
        )  # fmt: skip
        relaxed = [r.final_structure for r in ok]
        chgnet_hull = hull.e_above_hull_many(
            [s.composition for s in relaxed],
            [r.final_energy_per_atom * len(s) for r, s in zip(ok, relaxed, strict=True)],
        )
        kept = np.array([r.error is None for r in results])
        dft_mp = test_frame["e_above_hull"].to_numpy()[: args.relax][kept]
        dft_b = dft_hull[: args.relax][kept]
        n_elements = [len(s.composition) for s in relaxed]
        stable = np.mean(evaluate.stability_flags(chgnet_hull, n_elements))
        meta = np.mean(evaluate.stability_flags(chgnet_hull, n_elements, threshold=0.08))
        from scipy.stats import spearmanr

        for label, other in (("DFT e_above_hull (MP hull)", dft_mp), ("DFT on hull (b)", dft_b)):
            mad = float(np.nanmean(np.abs(chgnet_hull - other)))
            rho = float(spearmanr(chgnet_hull, other, nan_policy="omit").statistic)
            lines.append(
                f"- {len(ok)} CHGNet-relaxed MP-20 test crystals, E_hull(CHGNet, hull b) against "
                f"{label}: mean absolute difference {mad:.3f} eV/atom, Spearman rho {rho:.2f}."
            )
        lines.append(
            f"- Same crystals: stable (E_hull <= 0, >= 2 elements) {stable:.1%}, metastable "
            f"(E_hull <= 0.08) {meta:.1%} against hull (b); this is the bias baseline for rates "
            "of generated crystals. Small sample: indicative only."
        )
        closeness = evaluate.closeness(chosen, results)
        lines.append(
            f"- Closeness of test crystals to their CHGNet relaxation: match "
            f"{closeness.match_rate:.1%}, RMSD {closeness.rmsd:.4f}, "
            f"dE {closeness.delta_energy:.4f} eV/atom, steps {closeness.steps:.1f}."
        )

    speed: list[str] = []
    if args.relax:
        speed, per_step = chgnet_speed(test[:16])
        fp_cost = t2 / len(few)
        speed.append(
            f"- Estimate for 1,000 generated crystals on 2 free cores: relaxation at 38 FIRE steps "
            f"each (FlowLLM's mean) ~{1000 * 38 * per_step / 2 / 60:.0f} min, at 192 steps "
            f"(FlowMM's) ~{1000 * 192 * per_step / 2 / 60:.0f} min; fingerprints "
            f"~{1000 * fp_cost / 60:.0f} min, plus ~{9046 * fp_cost / 60:.0f} min once for the "
            "9,046 test-split fingerprints (save them with `Fingerprints.save`); everything "
            "else is seconds."
        )

    load = os.getloadavg()
    header = [
        "# Evaluation benchmark",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"Python {platform.python_version()}; load average during the run "
        f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} (shared machine: other jobs were running, "
        "so times are pessimistic). Produced by `python benchmarks/bench_evaluate.py`.",
        "",
        "| metric | n | s per structure | note |",
        "|---|---|---|---|",
    ]
    table = [f"| {m} | {n} | {s:.4f} | {note} |" for m, n, s, note in rows]
    text = "\n".join(
        [*header, *table, "", "## S.U.N. matching time by set size", "", *sun_lines, "",
         "## Hull and relaxation checks", "", *lines, "",
         "## CHGNet relaxation speed", "", *speed, ""]
    )  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
