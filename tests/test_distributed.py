"""Every heavy stage under a launcher: two processes on the gloo backend (``torchrun``, and
``accelerate launch`` as the README writes it) give what one process gives. Sampling, flow
sampling and relaxation bit for bit; training within floating-point tolerance; the SLURM array
path through submitit's local executor. All at smoke size on a tiny LLM and flow."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from flowllm_kit.crystal import read_crystals
from flowllm_kit.llm import PairSet, read_draws

pytestmark = pytest.mark.slow

SMOKE = ["--preset", "smoke"]
SAMPLING = ["--temperature", "0.7", "--max-draws", "240"]


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _check(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=600)
    assert done.returncode == 0, (
        f"{' '.join(command)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


def kit(run: Path, *argv: str) -> str:
    """``python -m flowllm_kit`` in one process."""
    return _check([sys.executable, "-m", "flowllm_kit", *argv, *SMOKE, "--run-dir", str(run)])


def torchrun(run: Path, *argv: str, processes: int = 2) -> str:
    """The same command on ``processes`` processes started by torchrun."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes)]
    launcher += ["--master_port", _free_port(), "-m", "flowllm_kit"]
    return _check([*launcher, *argv, *SMOKE, "--run-dir", str(run)])


def accelerate(run: Path, *argv: str) -> str:
    """The README's form: ``accelerate launch --multi_gpu --num_processes 2 -m flowllm_kit``."""
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    launcher += ["--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no"]
    launcher += ["--dynamo_backend", "no", "--main_process_port", _free_port()]
    return _check([*launcher, "-m", "flowllm_kit", *argv, *SMOKE, "--run-dir", str(run)])


def copy(run: Path, to: Path, *parts: str) -> Path:
    to.mkdir(parents=True)
    for part in parts:
        source = run / part
        (shutil.copytree if source.is_dir() else shutil.copy)(source, to / part)
    return to


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """A smoke run folder with an LLM, its samples, a pair set and four trained flows."""
    root = tmp_path_factory.mktemp("launched") / "run"
    kit(root, "train-llm", "--max-steps", "300", "--max-train", "4", "--num-eval", "2")
    kit(root, "sample-llm", "--num-samples", "12", *SAMPLING)
    kit(root, "pairs", "--num-pairs", "8", "--max-draws", "64", "--temperature", "0.3")
    kit(root, "train-flow", "--max-steps", "4", "--batch-size", "4")
    return root


def kept_texts(path: Path, n: int) -> list[tuple[int, str | None]]:
    return [(d.draw, d.text) for d in read_draws(path, repair=False) if d.kept][:n]


def test_llm_sampling_on_two_processes_draws_one_process_crystals(run: Path, tmp_path: Path):
    one = copy(run, tmp_path / "one", "llm", "tokenizer")
    two = copy(run, tmp_path / "two", "llm", "tokenizer")
    kit(one, "sample-llm", "--num-samples", "60", *SAMPLING)
    accelerate(two, "sample-llm", "--num-samples", "60", *SAMPLING)
    expected = kept_texts(one / "llm_samples.jsonl", 60)
    assert len(expected) == 60 and expected[-1][0] >= 64  # the crystals span two blocks
    assert kept_texts(two / "llm_samples.jsonl", 60) == expected
    shards = sorted(p.name for p in two.glob("llm_samples.rank-*.jsonl"))
    assert shards == ["llm_samples.rank-0.jsonl", "llm_samples.rank-1.jsonl"]
    # Resumed with another number of processes: nothing is drawn again, the result is the same.
    sizes = {p: p.stat().st_size for p in two.glob("llm_samples.rank-*.jsonl")}
    torchrun(two, "sample-llm", "--num-samples", "60", *SAMPLING, processes=3)
    assert {p: p.stat().st_size for p in two.glob("llm_samples.rank-*.jsonl")} == sizes
    assert kept_texts(two / "llm_samples.jsonl", 60) == expected


def test_pairs_on_two_processes_equal_the_sharded_one_process_pairs(run: Path, tmp_path: Path):
    one = copy(run, tmp_path / "one", "llm", "tokenizer")
    two = copy(run, tmp_path / "two", "llm", "tokenizer")
    plain = copy(run, tmp_path / "plain", "llm", "tokenizer")
    options = ["--num-pairs", "20", "--max-draws", "96", "--temperature", "0.3"]
    torchrun(one, "pairs", *options, processes=1)  # one launched process draws in blocks too
    torchrun(two, "pairs", *options)
    kit(plain, "pairs", *options, "--sharded")  # and so does one plain process with --sharded
    a, b = (PairSet.load(r / "pairs" / "pairs.npz") for r in (one, two))
    c = PairSet.load(plain / "pairs" / "pairs.npz")
    assert np.array_equal(c.target_indices, a.target_indices) and c.num_draws == a.num_draws
    assert len(a.c0) == 20 and a.num_draws == b.num_draws and a.rejections == b.rejections
    assert np.array_equal(a.target_indices, b.target_indices)
    for x, y in zip(a.c0 + a.c1, b.c0 + b.c1, strict=True):
        assert x.id == y.id and np.array_equal(x.frac_coords, y.frac_coords)
        assert np.array_equal(x.atomic_numbers, y.atomic_numbers)


def _history(run: Path, model: str) -> list[dict]:
    folder = run / "flow" / model if model else run
    return json.loads((folder / "checkpoint" / "state.json").read_text())["history"]


def test_flow_training_on_two_processes_follows_the_one_process_curve(run: Path, tmp_path: Path):
    one = copy(run, tmp_path / "one", "pairs")
    two = copy(run, tmp_path / "two", "pairs")
    options = ["--model", "both"]  # FlowLLM and de novo FlowMM (atom types flow too)
    kit(one, "train-flow", *options, "--max-steps", "8", "--batch-size", "6")
    torchrun(two, "train-flow", *options, "--max-steps", "8", "--batch-size", "6")
    for model in ("flowllm", "flowmm"):
        a, b = _history(one, model), _history(two, model)
        assert len(a) == len(b) == 8
        for key in ("loss", "coords", "lattice", "grad_norm"):
            np.testing.assert_allclose([r[key] for r in b], [r[key] for r in a], rtol=1e-4)
        if model == "flowmm":
            np.testing.assert_allclose([r["types"] for r in b], [r["types"] for r in a], rtol=1e-4)
        weights = [
            load_file(r / "flow" / model / "checkpoint" / "model.safetensors") for r in (one, two)
        ]
        # Summing the gradients over two processes rounds differently from one batch; Adam's
        # normalized step turns that into weight differences up to ~1e-5 after 8 steps in
        # components whose gradient is near zero (seen: 1.001e-5 on one of 96). A wrong
        # reduction moves the loss, gradient-norm and weight curves far more.
        for name, value in weights[0].items():
            np.testing.assert_allclose(weights[1][name].numpy(), value.numpy(), atol=5e-5)


def test_flow_sampling_on_two_processes_is_bit_identical(run: Path, tmp_path: Path):
    one = copy(run, tmp_path / "one", "llm_samples.jsonl", "pairs", "flow")
    two = copy(run, tmp_path / "two", "llm_samples.jsonl", "pairs", "flow")
    # 12 starts, 4 batches per model. --n-samples: the LLM's last block of draws may have parsed
    # more than the 12 crystals asked of it, and every parsed one would otherwise start a flow.
    options = ["--n-samples", "12", "--num-steps", "3", "--batch-size", "3"]
    kit(one, "sample", *options)
    torchrun(two, "sample", *options)
    for model in ("flowllm", "flowmm", "flowmm_csp", "flowllm_types"):
        a, b = (r / "samples" / f"{model}.jsonl" for r in (one, two))
        assert len(read_crystals(a)) == 12
        assert a.read_bytes() == b.read_bytes(), model
    assert not list((two / "samples").glob("*.rank-*"))


def test_llm_fine_tuning_under_ddp_follows_the_one_process_curve(tmp_path: Path):
    options = ["train-llm", "--max-steps", "20", "--max-train", "16", "--num-eval", "2"]
    kit(tmp_path / "one", *options)
    accelerate(tmp_path / "two", *options)
    logs = [
        json.loads((tmp_path / r / "llm" / "train_log.json").read_text()) for r in ("one", "two")
    ]
    a, b = ([r["loss"] for r in log if "loss" in r] for log in logs)
    assert len(a) == len(b) == 2
    np.testing.assert_allclose(b, a, rtol=1e-4)
    weights = [
        load_file(tmp_path / r / "llm" / "model" / "model.safetensors") for r in ("one", "two")
    ]
    for name, value in weights[0].items():
        np.testing.assert_allclose(weights[1][name].numpy(), value.numpy(), atol=1e-5)


def test_the_shipped_fsdp_config_trains_as_one_process_does(tmp_path: Path):
    """configs/accelerate/fsdp_qlora_70b.yaml on two CPU processes (less the two options FSDP
    has only on GPUs): the same curve as one process, and a model file the kit loads."""
    config = Path(__file__).parents[1] / "configs" / "accelerate" / "fsdp_qlora_70b.yaml"
    options = ["train-llm", "--max-steps", "20", "--max-train", "16", "--num-eval", "2"]
    kit(tmp_path / "one", *options)
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
    launcher += ["--num_processes", "2", "--main_process_port", _free_port()]
    launcher += ["--fsdp_sync_module_states", "false", "--fsdp_cpu_ram_efficient_loading", "false"]
    _check([*launcher, "-m", "flowllm_kit", *options, *SMOKE, "--run-dir", str(tmp_path / "two")])
    logs = [
        json.loads((tmp_path / r / "llm" / "train_log.json").read_text()) for r in ("one", "two")
    ]
    a, b = ([r["loss"] for r in log if "loss" in r] for log in logs)
    np.testing.assert_allclose(b, a, rtol=1e-4)
    from flowllm_kit.llm import load_model

    model, _ = load_model(tmp_path / "two" / "llm" / "model")
    expected = load_file(tmp_path / "one" / "llm" / "model" / "model.safetensors")
    for name, value in model.state_dict().items():
        if name in expected:
            np.testing.assert_allclose(value.numpy(), expected[name].numpy(), atol=1e-5)


RELAX_SCRIPT = """
import sys
from flowllm_kit.data import load_dataset
from flowllm_kit.relax import RelaxConfig, relax_structures
crystals = load_dataset("mp_20_subset", "test")[:7]
crystals = crystals + crystals[:2]  # repeats are relaxed once
config = RelaxConfig(max_steps=15, max_structures_per_batch=1, num_workers=1)
relax_structures(crystals, config=config, cache_path=sys.argv[1], progress=False)
"""


def _cache(path: Path) -> dict[str, dict]:
    return {r["key"]: r["result"] for r in map(json.loads, path.read_text().splitlines())}


def test_relaxation_on_two_processes_is_bit_identical(tmp_path: Path, data_root: Path):
    script = tmp_path / "relax.py"
    script.write_text(RELAX_SCRIPT)
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    _check([sys.executable, str(script), str(one)])
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    _check([*launcher, "--master_port", _free_port(), str(script), str(two)])
    assert len(_cache(one)) == 7
    assert _cache(two) == _cache(one)
    assert not list(tmp_path.glob("two.rank-*"))


EVALUATE = ["--no-relaxed-hull", "--n-reference", "8", "-n", "4", "--relax-steps", "20"]


def _metrics(run: Path) -> dict[str, dict[str, float]]:
    import pandas as pd

    table = pd.read_csv(run / "evaluation" / "metrics.csv", index_col=0).drop(columns="seconds")
    return table.to_dict(orient="index")


def test_evaluation_on_two_processes_matches_one_and_array_relaxations_are_reused(
    run: Path, tmp_path: Path
):
    one = copy(run, tmp_path / "one", "llm_samples.jsonl")
    two = copy(run, tmp_path / "two", "llm_samples.jsonl")
    array = copy(run, tmp_path / "array", "llm_samples.jsonl")
    kit(one, "evaluate", *EVALUATE)
    torchrun(two, "evaluate", *EVALUATE)
    expected = _metrics(one)
    assert set(expected) == {"llm_only", "real", "perturbed"}
    for system, row in _metrics(two).items():  # batches differ: rounding-level differences
        np.testing.assert_allclose(list(row.values()), list(expected[system].values()), rtol=1e-4)
    # The array path: two local submitit tasks relax, one merge, and evaluate relaxes nothing.
    kit(
        array,
        "submit-array",
        "relax",
        "--tasks",
        "2",
        "--cluster",
        "local",
        "--wait",
        *EVALUATE[1:],
    )
    assert sorted(p.name for p in (array / "evaluation").glob("relax.rank-*")) == [
        "relax.rank-0.jsonl",
        "relax.rank-1.jsonl",
    ]
    kit(array, "merge-array", "relax")
    cache = _cache(array / "evaluation" / "relax.jsonl")
    assert cache.keys() == _cache(one / "evaluation" / "relax.jsonl").keys()
    kit(array, "evaluate", *EVALUATE)
    assert _cache(array / "evaluation" / "relax.jsonl") == cache  # nothing relaxed again
    for system, row in _metrics(array).items():
        np.testing.assert_allclose(list(row.values()), list(expected[system].values()), rtol=1e-4)


def test_llm_sampling_as_a_local_submitit_array_draws_the_same_crystals(run: Path, tmp_path: Path):
    one = copy(run, tmp_path / "one", "llm", "tokenizer")
    array = copy(run, tmp_path / "array", "llm", "tokenizer")
    kit(one, "sample-llm", "--num-samples", "60", *SAMPLING)
    submit = ["submit-array", "sample-llm", "--tasks", "2", "--cluster", "local", "--wait"]
    assert "the tasks wrote 240 draws" in kit(array, *submit, *SAMPLING)
    assert "60 crystals" in kit(array, "merge-array", "sample-llm", "--num-samples", "60")
    expected = kept_texts(one / "llm_samples.jsonl", 60)
    assert kept_texts(array / "llm_samples.jsonl", 60) == expected
    # Too few draws for the crystals asked: a clear error, and the draws are kept.
    too_many = [sys.executable, "-m", "flowllm_kit", "merge-array", "sample-llm", *SMOKE]
    done = subprocess.run(
        [*too_many, "--run-dir", str(array), "--num-samples", "1000"],
        capture_output=True, text=True, env=_env(),
    )  # fmt: skip
    assert done.returncode == 2 and "larger --max-draws" in done.stderr


QLORA_SCRIPT = """
import sys
from flowllm_kit.data import load_dataset
from flowllm_kit.llm import FinetuneConfig, LLMConfig, LoRAConfig, build_model, finetune
options = FinetuneConfig(
    max_steps=4, batch_size=4, warmup_steps=0, conditioning="none", logging_steps=1
)
# No adapter dropout: each process would draw its own masks, one process draws them in turn.
lora = LoRAConfig(dropout=0.0)
config = LLMConfig(pretrained=sys.argv[1], lora=lora, quantization="4bit", finetune=options)
model, tokenizer = build_model(config)
crystals = load_dataset("mp_20_subset", "val")[:16]
finetune(model, tokenizer, crystals, run_dir=sys.argv[2], config=config, progress_bar=False)
"""


def test_qlora_fine_tuning_under_ddp_follows_the_one_process_curve(
    tmp_path: Path, tokenizer, make_tiny_llama, data_root: Path
):
    """A pretrained model (a tiny local LLaMA standing in for LLaMA-2) with LoRA adapters on
    its 4-bit weights, fine-tuned on two processes: the adapters learn what one process's do."""
    pretrained = tmp_path / "pretrained"
    make_tiny_llama(tokenizer, hidden_size=64, intermediate_size=128).save_pretrained(pretrained)
    tokenizer.save_pretrained(pretrained)
    script = tmp_path / "qlora.py"
    script.write_text(QLORA_SCRIPT)
    _check([sys.executable, str(script), str(pretrained), str(tmp_path / "one")])
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    _check(
        [
            *launcher,
            "--master_port",
            _free_port(),
            str(script),
            str(pretrained),
            str(tmp_path / "two"),
        ]
    )
    logs = [json.loads((tmp_path / r / "train_log.json").read_text()) for r in ("one", "two")]
    a, b = ([r["loss"] for r in log if "loss" in r] for log in logs)
    assert len(a) == len(b) == 4
    np.testing.assert_allclose(b, a, rtol=1e-4)
    adapters = [
        load_file(tmp_path / r / "model" / "adapter_model.safetensors") for r in ("one", "two")
    ]
    assert adapters[0] and adapters[0].keys() == adapters[1].keys()
    for name, value in adapters[0].items():
        np.testing.assert_allclose(adapters[1][name].numpy(), value.numpy(), atol=1e-5)


RESUME_SCRIPT = """
import dataclasses, sys
import torch
from flowllm_kit.flow import FlowTrainer, VelocityNetwork, flow_configs
from flowllm_kit.run import RunFolder
from flowllm_kit.stages import flow_runs, load_pair_sets
pairs, _ = load_pair_sets(RunFolder(sys.argv[1]))
flow = flow_runs(pairs, None)["flowmm"]  # de novo: atom types flow too
network, config = flow_configs("smoke")
network = dataclasses.replace(network, type_bits=7)
config = dataclasses.replace(config, max_steps=8, batch_size=6, progress=False)
def trainer():
    torch.manual_seed(0)
    return FlowTrainer(VelocityNetwork(network), flow.train, base=flow.base, config=config,
                       run_dir=sys.argv[2])
if sys.argv[3] == "interrupted":  # stopped after 4 steps, resumed by a new trainer
    trainer().fit(num_steps=4)
    resumed = trainer()
    resumed.load_checkpoint(sys.argv[2] + "/checkpoint")
    resumed.fit()
else:
    trainer().fit()
"""


def test_data_parallel_flow_training_resumes_exactly(run: Path, tmp_path: Path):
    script = tmp_path / "resume.py"
    script.write_text(RESUME_SCRIPT)
    _check([sys.executable, str(script), str(run), str(tmp_path / "one"), "straight"])
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    launcher += ["--master_port", _free_port(), str(script)]
    _check([*launcher, str(run), str(tmp_path / "two"), "interrupted"])
    a, b = (_history(tmp_path / r, "") for r in ("one", "two"))
    assert [r["step"] for r in b] == list(range(8))
    for key in ("loss", "coords", "lattice", "types", "grad_norm"):
        np.testing.assert_allclose([r[key] for r in b], [r[key] for r in a], rtol=1e-4)
    weights = [load_file(tmp_path / r / "checkpoint" / "ema.safetensors") for r in ("one", "two")]
    for name, value in weights[0].items():
        np.testing.assert_allclose(weights[1][name].numpy(), value.numpy(), atol=1e-5)
