"""Configuration dataclasses of the LLM stage and their presets.

One dataclass per component (scratch architecture, LoRA, fine-tuning, sampling, pair set);
:class:`LLMConfig` bundles them, and the presets ``smoke``, ``demo`` and ``paper`` are
instances of it::

    >>> llm_preset("paper").lora.r
    8
    >>> llm_preset("demo").scratch.hidden_size
    128

A config round-trips through JSON (:meth:`LLMConfig.to_dict` / :meth:`LLMConfig.from_dict`),
which is how a run folder records the settings it was trained with.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from flowllm_kit.presets import PresetName, lookup_preset
from flowllm_kit.text.prompts import Conditioning

__all__ = [
    "LLM_PRESETS",
    "SCRATCH_PRESETS",
    "FinetuneConfig",
    "LLMConfig",
    "LoRAConfig",
    "PairConfig",
    "Quantization",
    "LLMSamplingConfig",
    "ScratchModelConfig",
    "llm_preset",
]

Quantization = Literal["none", "4bit", "8bit"]


@dataclass(frozen=True)
class ScratchModelConfig:
    """Shape of a LLaMA-architecture model trained from scratch (vocabulary from the tokenizer)."""

    hidden_size: int = 256  # width of the residual stream
    num_layers: int = 4  # decoder blocks
    num_heads: int = 8  # attention heads (hidden_size must divide by it)
    num_kv_heads: int | None = None  # grouped-query heads; None: as many as num_heads
    intermediate_size: int = 1024  # width of the SwiGLU MLP
    max_position_embeddings: int = 1024  # longest sequence (MP-20 texts: ~450 tokens)
    tie_word_embeddings: bool = False  # share input and output embedding matrices

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}"
            )


@dataclass(frozen=True)
class LoRAConfig:
    """Low-rank adapters (peft) on a pretrained model; defaults from docs/METHOD.md §3."""

    r: int = 8  # adapter rank
    alpha: int = 32  # scaling numerator: the update is (alpha / r) * B @ A
    dropout: float = 0.05  # dropout on the adapter input
    # Linear layers that get adapters. The reference code keeps PEFT's q/v default; the kit
    # adapts all four attention projections (the usual QLoRA choice).
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning with the transformers ``Trainer``."""

    epochs: float = 10.0  # passes over the training texts (paper: 10)
    max_steps: int | None = None  # stop after this many optimizer steps (overrides epochs)
    batch_size: int = 16  # texts per device step (paper: 16)
    gradient_accumulation_steps: int = 1  # steps per optimizer update
    learning_rate: float = 5e-4  # peak learning rate (paper: 5e-4; reference code: 1e-4)
    lr_scheduler: Literal["cosine", "linear", "constant_with_warmup"] = "cosine"
    warmup_steps: int = 100  # linear warmup (reference: 100)
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    max_length: int = 1024  # texts are truncated to this many tokens
    eval_steps: int | None = None  # evaluate every this many steps; None: once per epoch
    save_steps: int | None = None  # checkpoint every this many steps; None: once per epoch
    save_total_limit: int | None = 2  # checkpoints kept (older ones are deleted)
    logging_steps: int = 10  # log the training loss every this many steps
    # Batch texts of similar length (the Trainer's LengthGroupedSampler) so that less of each
    # batch is padding; MP-20 texts run from ~120 to ~450 tokens. Off in the reference. Faster
    # per text on a CPU, but a scratch model trained so copied no held-out formula after 20
    # passes where random batches copied 21-45 of 128 (benchmarks/results/llm_formula.md).
    group_by_length: bool = False
    # Pack each batch's texts end to end into rows of at most this many tokens, each text
    # masked from the others (padding-free batches), instead of padding every text to the
    # batch's longest. Same loss and gradients as padding; less compute per batch when lengths
    # vary. None: pad. 512 suits MP-20 (texts of ~120 to ~450 tokens).
    pack_length: int | None = None
    # Which crystals train and evaluate the model (None: all of the preset's splits).
    max_atoms: int | None = None  # only crystals with at most this many atoms
    max_train_crystals: int | None = None  # cap on training crystals
    max_eval_crystals: int = 512  # evaluation crystals whose loss is logged
    seed: int = 0  # seed of weights' init (scratch), data order and augmentation
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on GPUs that support it
    # Training text options (flowllm_kit.text.training_text): fresh draws every epoch.
    # "random": the reference's random attributes; "formula": the formula alone or nothing
    conditioning: Conditioning = "random"
    formula_probability: float = 0.5  # "formula": share of texts prompted with the formula
    infill_probability: float = 0.0  # reference: 0.34 (kit default off: it only generates)
    translate: bool = True  # random global translation (reference: on)
    permute: bool = False  # random atom order (not in the reference)

    def __post_init__(self) -> None:
        if self.pack_length is not None and self.pack_length < 1:
            raise ValueError(
                f"pack_length must be a positive number of tokens, got {self.pack_length}"
            )
        if not 0.0 <= self.formula_probability <= 1.0:
            raise ValueError(
                f"formula_probability must lie in [0, 1], got {self.formula_probability}"
            )


@dataclass(frozen=True)
class LLMSamplingConfig:
    """Nucleus sampling from the fine-tuned model (docs/METHOD.md §3)."""

    temperature: float = 0.7  # paper's best: 0.7
    top_p: float = 0.9  # paper's best: 0.9
    max_new_tokens: int = 512  # a text longer than this is cut and rejected
    batch_size: int = 64  # prompts per generate call
    # "static": a preallocated KV cache (about 10% less CPU time than "dynamic" at batch 64
    # on the demo model, none at small batches; see benchmarks/results/llm_sampling.md).
    cache: Literal["static", "dynamic"] = "static"
    # Continuous batching (flowllm_kit.llm.stream): batch_size rows decode together and a row
    # whose text has ended takes the next draw at once, instead of every row waiting for the
    # batch's longest text. Each draw then samples from its own seeded generator. Used by
    # sample_crystals for models with a plain DynamicCache when no composition is imposed. On
    # the 2-core CPU it drew real crystals 2.2x / 2.5x / 3.0x as fast as plain generate at batch
    # 1 / 16 / 64 (benchmarks/results/llm_sampling.md); on a GPU, where transformers compiles the
    # static-cache step, it has not been measured, so it is on in the CPU presets only.
    continuous: bool = False


@dataclass(frozen=True)
class PairConfig:
    """The (LLM crystal, real crystal) pair set of Algorithm 1, step 2 (docs/METHOD.md §4)."""

    num_pairs: int = 1000  # N_tr pairs kept (paper: 3.3 million)
    temperature: float = 0.9  # the paper drew pairs with tau = 0.9
    top_p: float = 0.99  # and P = 0.99
    noise_std: float = 0.0  # Gaussian noise on c0's coordinates (reference: none)
    max_draws: int | None = (
        None  # give up after this many samples; None: DRAWS_PER_CRYSTAL per pair
    )
    # Hold each sample's element lines to its target's composition while decoding, instead of
    # rejecting mismatches (flowllm_kit.llm.constrain). Not the paper's method: for small
    # models that have not learnt to copy the formula of their prompt. Kit tokenizer only.
    constrain_composition: bool = False


@dataclass(frozen=True)
class LLMConfig:
    """Everything about the LLM stage of one run.

    Exactly one of ``scratch`` (train a LLaMA-architecture model from scratch, on the kit's
    tokenizer, all weights trained) and ``pretrained`` (a local path or hub id of a causal LM,
    its own tokenizer, LoRA adapters trained) is set.
    """

    scratch: ScratchModelConfig | None = None  # architecture of a model trained from scratch
    pretrained: str | None = None  # local folder or hub id of a pretrained causal LM
    lora: LoRAConfig | None = None  # adapters; None: full fine-tuning (scratch models)
    quantization: Quantization = "none"  # bitsandbytes loading of the pretrained weights
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    sampling: LLMSamplingConfig = field(default_factory=LLMSamplingConfig)
    pairs: PairConfig = field(default_factory=PairConfig)

    def __post_init__(self) -> None:
        if (self.scratch is None) == (self.pretrained is None):
            raise ValueError("set exactly one of LLMConfig.scratch and LLMConfig.pretrained")
        if self.quantization != "none" and (self.pretrained is None or self.lora is None):
            raise ValueError("quantized loading needs a pretrained model with LoRA adapters")

    def replace(self, **changes: Any) -> LLMConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dictionary (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LLMConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``TypeError``."""
        parts: dict[str, Any] = dict(data)
        if parts.get("scratch") is not None:
            parts["scratch"] = ScratchModelConfig(**parts["scratch"])
        if parts.get("lora") is not None:
            lora = dict(parts["lora"])
            lora["target_modules"] = tuple(lora.get("target_modules", ()))
            parts["lora"] = LoRAConfig(**lora)
        for name, kind in (
            ("finetune", FinetuneConfig),
            ("sampling", LLMSamplingConfig),
            ("pairs", PairConfig),
        ):
            if name in parts:
                parts[name] = kind(**parts[name])
        return cls(**parts)


SCRATCH_PRESETS: dict[str, ScratchModelConfig] = {
    # CI: about 0.1 M parameters with the kit's ~200-token vocabulary.
    "smoke": ScratchModelConfig(
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        intermediate_size=192,
        max_position_embeddings=768,
    ),
    # 2-core CPU: about 0.55 M parameters. Two blocks, not four: on a GPU the two-block model
    # learned to copy its prompt's formula in fewer passes over MP-20 val, and it trains about
    # 2.3x as fast per text on the CPU. Tied embeddings: untied, the same recipe learned no
    # copying by 2,000 steps (benchmarks/results/llm_formula.md).
    "demo": ScratchModelConfig(
        hidden_size=128, num_layers=2, num_heads=4, intermediate_size=512, tie_word_embeddings=True
    ),
    # One GPU: about 85 M parameters (GPT-2 small's width and depth).
    "gpu": ScratchModelConfig(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=2048),
}

# Demo: 13,000 steps of 16 texts (23 passes over MP-20 val) in random order, the formula in 4
# of 5 prompts (as often as in the reference's random prompts) and nothing in the others,
# texts packed into rows of 512 tokens (same gradients as padding, ~1.2x faster on the CPU).
# In make demo at 3ee199f (62 minutes of training on 2 CPU cores) the model wrote the reduced
# formula in 56% of 256 answers to the 128 held-out formulas (the exact atoms in 36%) at
# tau 0.7, P 0.9; the previous recipe (11,310 steps, the formula in half the prompts,
# padded) 39% (28%). Formula following takes many passes and is sensitive to the recipe: on
# a GPU, the Trainer's length-grouped batches learned no copying in 20 passes, and seeds of
# one recipe differed by 15 of 128 formulas (benchmarks/results/llm_formula.md).
_DEMO = LLMConfig(
    scratch=SCRATCH_PRESETS["demo"],
    finetune=FinetuneConfig(
        max_steps=13_000,
        batch_size=16,
        pack_length=512,
        learning_rate=2e-3,
        warmup_steps=50,
        eval_steps=1_000,
        save_steps=1_000,
        logging_steps=50,
        max_eval_crystals=128,
        conditioning="formula",
        formula_probability=0.8,
    ),
    # The paper's best settings. (The first demo model, 4 blocks trained for 1,500 steps of
    # 16, fell into loops of atoms at them and sampled at tau 0.9, P 0.95 instead.)
    sampling=LLMSamplingConfig(
        temperature=0.7, top_p=0.9, batch_size=32, max_new_tokens=448, continuous=True
    ),
    # Composition-constrained decoding keeps every parsed draw: the pair set does not then
    # depend on how often the model gets a composition right (notebook 04 reports that).
    pairs=PairConfig(num_pairs=500, max_draws=1_000, constrain_composition=True),
)


LLM_PRESETS: dict[str, LLMConfig] = {
    # Smoke: 16 crystals of at most 4 atoms, many passes. Within a minute on one CPU thread a
    # 0.1M-parameter model learns to write and end such short texts and to answer a training
    # formula with its composition, which the later smoke stages need (it learns no chemistry).
    "smoke": LLMConfig(
        scratch=SCRATCH_PRESETS["smoke"],
        finetune=FinetuneConfig(
            epochs=250.0,
            batch_size=8,
            learning_rate=5e-3,
            warmup_steps=5,
            eval_steps=50,
            save_steps=250,
            logging_steps=10,
            max_atoms=4,
            max_train_crystals=16,
            max_eval_crystals=32,
        ),
        sampling=LLMSamplingConfig(batch_size=16, max_new_tokens=448, continuous=True),
        pairs=PairConfig(num_pairs=16, max_draws=512),
    ),
    "demo": _DEMO,
    # Kit scale: the demo's model and recipe trained twice as long (46 passes over MP-20 val,
    # about two hours on 2 CPU cores), and the paper's pair set in miniature: 30,000 pairs drawn
    # at tau 0.9, P 0.99 and kept only when the composition is the target's (the paper's
    # rejection, no constrained decoding), about 3 draws per training crystal.
    "kit": _DEMO.replace(
        finetune=dataclasses.replace(_DEMO.finetune, max_steps=26_000),
        pairs=PairConfig(num_pairs=30_000, max_draws=150_000),
    ),
    # The paper: LLaMA-2 70B, QLoRA (4-bit) r=8 alpha=32, 10 epochs, batch 16, cosine 5e-4.
    "paper": LLMConfig(
        pretrained="meta-llama/Llama-2-70b-hf",
        lora=LoRAConfig(),
        quantization="4bit",
        finetune=FinetuneConfig(epochs=10.0, batch_size=16, learning_rate=5e-4, max_length=1024),
        sampling=LLMSamplingConfig(batch_size=32, max_new_tokens=1024),
        pairs=PairConfig(num_pairs=3_300_000),
    ),
}


def llm_preset(name: PresetName) -> LLMConfig:
    """The LLM configuration of the preset called ``name``.

    Raises:
        ValueError: If ``name`` is not one of ``smoke``, ``demo``, ``paper``.
    """
    return lookup_preset(LLM_PRESETS, name)
