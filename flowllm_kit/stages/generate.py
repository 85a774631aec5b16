"""Crystals from a trained FlowLLM in one call: the LLM proposes, the flow refines, and every
crystal is written as a CIF with a summary (``python -m flowllm_kit generate``).

With formulas, each crystal answers the prompt of its formula and its element lines are held
to exactly the requested atoms while decoding (:mod:`flowllm_kit.llm.constrain`), so every
crystal has the composition asked for; the flow moves atoms and lattice, never the atom types.
Without formulas the LLM writes crystals freely from the unconditional prompt.

Example::

    >>> result = generate(RunFolder("runs/demo"), out="out", n=8, formulas=["LiFePO4"])
    >>> result.summary[["id", "formula", "matches_request"]]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from flowllm_kit import text
from flowllm_kit.crystal import Crystal
from flowllm_kit.crystal.convert import as_structures, write_cif
from flowllm_kit.evaluate import compositional_validity, structural_validity
from flowllm_kit.flow import (
    AtomCounts,
    FlowSamplerConfig,
    TypesOnlyBase,
    UniformBase,
    denovo_starts_from,
    sample_in_chunks,
    types_only_starts,
)
from flowllm_kit.llm.sample import sample_crystals
from flowllm_kit.relax import RelaxConfig, relax_structures
from flowllm_kit.run import RunFolder
from flowllm_kit.stages.flow import load_flows, load_pair_sets
from flowllm_kit.stages.llm import load_llm, sampling_config

__all__ = [
    "GENERATORS",
    "STARTS_JSON",
    "Generated",
    "generate",
    "parse_formula",
    "start_statistics",
]

SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"
STARTS_JSON = "starts.json"  # a checkpoint's start statistics (atoms per cell, uniform base)


@dataclass
class Generated:
    """What :func:`generate` wrote."""

    crystals: list[Crystal]  # the final crystals (refined unless refine=False)
    summary: pd.DataFrame  # one row per crystal (also summary.csv / summary.json)
    folder: Path
    rejections: Counter[str] = field(default_factory=Counter)  # LLM draws rejected, by reason
    num_draws: int = 0


def parse_formula(formula: str) -> dict[str, int]:
    """``{element: count}`` of a formula such as ``"LiFePO4"`` or ``"Li4Fe4P4O16"``: the atoms
    of the cell asked for (so ``Li4Fe4P4O16`` asks for four formula units).

    Raises:
        ValueError: Naming the formula, if it does not parse, has fractional or no atoms.
    """
    from pymatgen.core import Composition, Element

    try:
        composition = Composition(formula)
    except (ValueError, KeyError) as error:
        raise ValueError(f"formula {formula!r} does not parse: {error}") from None
    counts = composition.get_el_amt_dict()
    unknown = [el for el in counts if not Element.is_valid_symbol(el) or Element(el).Z > 94]
    if unknown:
        raise ValueError(f"formula {formula!r} names {unknown}, not elements 1-94")
    if not counts or any(a <= 0 or abs(a - round(a)) > 1e-8 for a in counts.values()):
        raise ValueError(f"formula {formula!r} must name whole numbers of atoms")
    return {element: int(round(amount)) for element, amount in counts.items()}


GENERATORS = ("flowllm", "llm", "flowllm_types", "flowmm")
"""What :func:`generate` can run: FlowLLM (the LLM's crystals refined by the flow), the LLM
alone, FlowLLM-Types (the LLM's atom types, geometry from the flow) and de novo FlowMM (sizes
from the training distribution, atom types and geometry from the flow; no formulas)."""


def start_statistics(run: RunFolder) -> tuple[AtomCounts, UniformBase]:
    """What the FlowMM and FlowLLM-Types starts are drawn from: a checkpoint's ``starts.json``,
    or, in a run folder, fitted to its pair set's targets.

    Raises:
        RunFolderError: If the folder has neither.
    """
    stored = run.root / STARTS_JSON
    if stored.is_file():
        values = json.loads(stored.read_text())
        counts = values["atom_counts"]
        sizes = AtomCounts(tuple(counts["counts"]), tuple(counts["probabilities"]))
        return sizes, UniformBase(**{k: _tuple(v) for k, v in values["uniform_base"].items()})
    targets = load_pair_sets(run)[0].c1
    return AtomCounts.fit(targets), UniformBase.fit(targets)


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def generate(
    run: RunFolder,
    *,
    out: str | Path,
    n: int,
    formulas: Sequence[str] | None = None,
    model: str = "flowllm",
    sampler: FlowSamplerConfig | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    seed: int = 0,
    relax: RelaxConfig | None = None,
    progress: bool = True,
) -> Generated:
    """Generate ``n`` crystals (``n`` per formula when formulas are given) into ``out``.

    Args:
        run: A run folder (or checkpoint, :mod:`flowllm_kit.pretrained`) with an LLM and the
            flow of ``model``.
        out: Output folder: ``cif/<id>.cif``, ``summary.csv``, ``summary.json`` and the LLM's
            draws (``draws/``, resumable).
        n: Crystals (per formula).
        formulas: Compositions asked for (each parsed by :func:`parse_formula`); None:
            unconditional.
        model: One of :data:`GENERATORS` (default FlowLLM).
        sampler: The flow's ODE settings (default: the run's ``samples/sampler.json``, else
            250 Euler steps).
        temperature, top_p: The LLM's sampling (default: the run's).
        seed: Seeds the LLM's draws and the flows' start draws.
        relax: Also relax every crystal with CHGNet and report its energy (None: no).
        progress: Show progress bars.

    Raises:
        ValueError: If ``n`` < 1, a formula is not a whole-atom composition, the model is
            unknown, or formulas are given to de novo FlowMM.
        RunFolderError: If the LLM or the model's flow is missing.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if model not in GENERATORS:
        raise ValueError(f"unknown model {model!r}; expected one of {GENERATORS}")
    if model == "flowmm" and formulas:
        raise ValueError("de novo FlowMM generates its own atom types: it takes no formulas")
    requests = [(f, parse_formula(f)) for f in formulas] if formulas else [(None, None)]
    out = Path(out)
    (out / "draws").mkdir(parents=True, exist_ok=True)
    network = None if model == "llm" else load_flows(run, [model])[model]
    rejections: Counter[str] = Counter()
    draws = 0
    if model == "flowmm":
        sizes, base = start_statistics(run)
        llm_crystals = denovo_starts_from(sizes, base, count=n, seed=seed)
        asked: list[str | None] = [None] * n
    else:
        llm_crystals, asked, rejections, draws = _llm_crystals(
            run, out, n, requests, temperature, top_p, seed, progress
        )
    starts = llm_crystals
    if model == "flowllm_types":
        base = TypesOnlyBase(**dataclasses.asdict(start_statistics(run)[1]))
        starts = types_only_starts(llm_crystals, base=base, seed=seed)
    crystals = list(starts)
    if network is not None and starts:
        if sampler is None:
            settings = run.sampler_settings
            sampler = (
                FlowSamplerConfig(**json.loads(settings.read_text()))
                if settings.is_file()
                else FlowSamplerConfig(num_steps=250)
            )
        chunks = sample_in_chunks(
            network, starts, config=sampler, batch_size=256, progress=progress,
            desc=f"{model} flow", seed=seed,
        )  # fmt: skip
        crystals = [c for chunk in chunks for c in chunk]
    summary = _summary(crystals, starts, asked, relax, out, progress)
    (out / "cif").mkdir(exist_ok=True)
    for crystal in crystals:
        write_cif([crystal], out / "cif" / f"{crystal.id}.cif")
    summary.to_csv(out / SUMMARY_CSV, index=False)
    summary.to_json(out / SUMMARY_JSON, orient="records", indent=1)
    return Generated(crystals, summary, out, rejections, draws)


def _llm_crystals(
    run: RunFolder,
    out: Path,
    n: int,
    requests: list[tuple[str | None, dict[str, int] | None]],
    temperature: float | None,
    top_p: float | None,
    seed: int,
    progress: bool,
) -> tuple[list[Crystal], list[str | None], Counter[str], int]:
    """The LLM's crystals for each request: ``(crystals, requested formulas, rejections,
    draws)``."""
    model, tokenizer, config = load_llm(run)
    sampling = sampling_config(config, temperature=temperature, top_p=top_p)
    crystals, asked = [], []
    rejections: Counter[str] = Counter()
    draws = 0
    for number, (formula, counts) in enumerate(requests):
        prompt = text.generation_prompt()
        if counts is not None:
            prompt = text.generation_prompt(formula=_reduced(counts))
            sampling = dataclasses.replace(sampling, continuous=False)  # constrained: batches
        name = "unconditional" if formula is None else f"{number:03d}-{formula}"
        result = sample_crystals(
            model, tokenizer, num_crystals=n, prompts=prompt, config=sampling,
            path=out / "draws" / f"{name}.jsonl", seed=seed + number,
            compositions=None if counts is None else (lambda draw, c=counts: c),
            progress_bar=progress, desc=f"LLM ({formula or 'unconditional'})",
        )  # fmt: skip
        prefix = "gen" if formula is None else f"{number:03d}"
        crystals += [c.replace(id=f"{prefix}-{k}") for k, c in enumerate(result.crystals)]
        asked += [formula] * len(result.crystals)
        rejections.update(result.rejections)
        draws += result.num_draws
    return crystals, asked, rejections, draws


def _reduced(counts: dict[str, int]) -> str:
    from pymatgen.core import Composition

    return Composition(counts).reduced_formula


def _summary(
    crystals: list[Crystal],
    starts: list[Crystal],
    asked: list[str | None],
    relax: RelaxConfig | None,
    out: Path,
    progress: bool,
) -> pd.DataFrame:
    """One row per crystal: what was asked, what came, validity, and CHGNet's energy if asked."""
    structures = as_structures(crystals)
    rows = []
    for crystal, start, formula, structure in zip(crystals, starts, asked, structures, strict=True):
        lengths, angles = crystal.lengths.tolist(), crystal.angles.tolist()
        rows.append({
            "id": crystal.id,
            "requested": formula,
            "formula": crystal.formula,
            "num_atoms": crystal.num_atoms,
            "matches_request": None
            if formula is None
            else crystal.composition == parse_formula(formula),
            **{k: v for k, v in zip(("a", "b", "c"), lengths, strict=True)},
            **{k: v for k, v in zip(("alpha", "beta", "gamma"), angles, strict=True)},
            "volume": structure.volume,
            "llm_draw": start.id,
        })  # fmt: skip
    summary = pd.DataFrame(rows)
    summary["structurally_valid"] = structural_validity(structures)
    summary["compositionally_valid"] = compositional_validity(structures)
    if relax is not None and crystals:
        results = relax_structures(
            structures, config=relax, cache_path=out / "relax.jsonl", progress=progress
        )
        summary["energy_per_atom"] = [r.final_energy_per_atom for r in results]
        summary["relax_converged"] = [r.converged for r in results]
    return summary
