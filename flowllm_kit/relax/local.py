"""Relax many structures with CHGNet in this process: cache look-up, worker processes, batched
FIRE (:func:`flowllm_kit.relax.relax_structures` adds the launcher's processes)."""

from __future__ import annotations

import contextlib
import os
import queue
from collections.abc import Iterator, Sequence
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from flowllm_kit.crystal.convert import as_structures
from flowllm_kit.progress import progress_bar
from flowllm_kit.relax.batched import relax_in_batches
from flowllm_kit.relax.cache import RelaxCache, relax_key
from flowllm_kit.relax.chgnet_model import CHGNetModel, load_chgnet, resolve_device
from flowllm_kit.relax.config import RelaxConfig
from flowllm_kit.relax.result import RelaxResult

if TYPE_CHECKING:
    from pymatgen.core import Structure
    from torch_sim.models.interface import ModelInterface

    from flowllm_kit.crystal import Crystal

__all__ = ["relax_locally", "single_threaded"]


def relax_locally(
    structures: Sequence[Structure | Crystal],
    *,
    config: RelaxConfig | None = None,
    cache_path: str | Path | None = None,
    progress: bool = True,
    desc: str = "CHGNet relax",
    model: ModelInterface | None = None,
) -> list[RelaxResult]:
    """:func:`~flowllm_kit.relax.relax_structures` in this process and its workers alone
    (whatever launcher started it); the arguments are that function's."""

    config = config or RelaxConfig()
    inputs = as_structures(structures)
    keys = [relax_key(s, config) for s in inputs]
    cache = RelaxCache(cache_path) if cache_path is not None else None
    done: dict[str, RelaxResult] = {}
    if cache is not None:
        done = {key: cache.get(key) for key in set(keys) if key in cache}
    todo: dict[str, Structure] = {}
    for key, structure in zip(keys, inputs, strict=True):
        if key not in done and key not in todo:
            reason = _unrelaxable(structure)
            if reason is None:
                todo[key] = structure
            else:
                done[key] = RelaxResult.failure(reason)

    todo_keys = list(todo)
    bar = progress_bar(total=len(todo_keys), desc=desc, unit="crystals", disable=not progress)

    def record(position: int, result: RelaxResult) -> None:
        key = todo_keys[position]
        done[key] = result
        if cache is not None and not (result.error or "").startswith(_WORKER_DIED):
            cache.put(key, result)  # a dead worker is not the structure's fault: retry next run
        bar.update(1)

    workers = _num_workers(config)
    device = resolve_device(config.device)
    to_relax = [todo[key] for key in todo_keys]
    in_process = workers == 1 or len(to_relax) < _MIN_STRUCTURES_PER_WORKER * workers
    if model is not None or device.type != "cpu" or in_process:
        with single_threaded(device.type == "cpu"):
            if model is None:
                model = CHGNetModel(load_chgnet(config.model_name, str(device)), device=device)
            relax_in_batches(to_relax, model=model, config=config, on_result=record)
    else:
        _relax_in_workers(to_relax, config=config, workers=workers, on_result=record)
    bar.close()
    return [done[key] for key in keys]


@contextlib.contextmanager
def single_threaded(enabled: bool = True) -> Iterator[None]:
    """One torch thread and one BLAS thread while inside (restored on exit).

    CHGNet on MP-20-sized cells gains little from a second intra-op thread, and on a shared
    machine OpenMP and OpenBLAS threads spin at barriers while their partner is descheduled, which
    made a CHGNet call 20x slower here; parallelism comes from worker processes instead.
    """
    if not enabled:
        yield
        return
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(previous)


def _unrelaxable(structure: Structure) -> str | None:
    """Why a structure cannot even be handed to the relaxer, or None."""
    if len(structure) == 0:
        return "empty structure"
    if not structure.is_ordered:
        return "disordered structure (partial occupancies); order it first"
    if abs(structure.volume) < 1e-3:
        return f"degenerate cell (volume {structure.volume:.2g} Å³)"
    return None


def _num_workers(config: RelaxConfig) -> int:
    if config.num_workers is not None:
        return config.num_workers
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _relax_in_workers(
    structures: list[Structure], *, config: RelaxConfig, workers: int, on_result: Any
) -> None:
    """Single-threaded worker processes, each relaxing its share in one in-flight batch.

    Worker ``w`` takes structures ``w, w + workers, ...`` and reports every result the moment it
    is final, so the cache fills as the run goes and a structure that needs many steps holds up
    only its own slot in a batch that keeps refilling, never a whole group of others. A worker
    that dies fails the structures it had not reported; the others carry on.
    """
    context = get_context("spawn")  # a forked child would inherit torch's thread pools
    shares = [list(range(w, len(structures), workers)) for w in range(workers)]
    shares = [share for share in shares if share]
    messages = context.Queue()
    processes = [
        context.Process(
            target=_worker_main,
            args=(w, [structures[i] for i in share], config, messages),
            daemon=True,
        )
        for w, share in enumerate(shares)
    ]
    pending = [set(range(len(share))) for share in shares]
    failures: dict[int, str] = {}  # worker -> why it stopped early
    try:
        for process in processes:
            process.start()
        while any(pending):
            try:
                worker, position, payload = messages.get(timeout=1.0)
            except queue.Empty:
                # Nothing came for a second: whatever a finished worker sent has arrived.
                for w, process in enumerate(processes):
                    if pending[w] and not process.is_alive():
                        reason = failures.get(w, f"exit code {process.exitcode}")
                        for position in sorted(pending[w]):
                            on_result(shares[w][position], RelaxResult.failure(
                                f"{_WORKER_DIED}: {reason}"
                            ))  # fmt: skip
                        pending[w].clear()
                continue
            if position is None:
                failures[worker] = payload  # the worker's own account of why it stopped
                continue
            pending[worker].discard(position)
            on_result(shares[worker][position], payload)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()
        messages.close()


# Starting a worker (new interpreter, torch, CHGNet) takes seconds: not worth it for a few.
_MIN_STRUCTURES_PER_WORKER = 4
_WORKER_DIED = "worker process failed"


def _worker_main(
    worker: int, structures: list[Structure], config: RelaxConfig, messages: Any
) -> None:
    """A worker process: one thread, CHGNet loaded, every result sent as soon as it is final."""
    from threadpoolctl import threadpool_limits

    try:
        torch.set_num_threads(1)
        threadpool_limits(limits=1, user_api="blas")
        model = CHGNetModel(load_chgnet(config.model_name, "cpu"), device="cpu")
        relax_in_batches(
            structures,
            model=model,
            config=config,
            on_result=lambda position, result: messages.put((worker, position, result)),
        )
    except BaseException as exc:
        messages.put((worker, None, f"{type(exc).__name__}: {exc}"))
        raise
