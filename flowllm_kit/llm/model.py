"""Language models that write crystals: LLaMA-architecture models trained from scratch, or a
pretrained causal LM with LoRA adapters, optionally loaded in 4-bit (QLoRA, nf4) or 8-bit.

Example::

    >>> tokenizer = build_tokenizer()                       # flowllm_kit.text
    >>> model = scratch_model(tokenizer, config="smoke")    # all weights trainable
    >>> model, tokenizer = pretrained_model("path/to/llama", quantization="4bit")  # LoRA

Weights are read from safetensors files only, and remote code is never trusted unless the
caller asks for it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from flowllm_kit.distributed import resolve_device
from flowllm_kit.llm.config import (
    SCRATCH_PRESETS,
    LLMConfig,
    LoRAConfig,
    Quantization,
    ScratchModelConfig,
)
from flowllm_kit.run import LLM_CONFIG_JSON

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "build_model",
    "count_parameters",
    "load_model",
    "merge_lora",
    "pretrained_model",
    "scratch_model",
]


def _ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> None:
    """Give the tokenizer a padding token (LLaMA tokenizers ship without one).

    The end-of-sequence token is reused; training masks padding through the attention mask,
    never by token id, so the model still learns to emit end-of-sequence.
    """
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def scratch_model(
    tokenizer: PreTrainedTokenizerBase,
    *,
    config: ScratchModelConfig | str = "demo",
    seed: int | None = None,
) -> PreTrainedModel:
    """A randomly initialised LLaMA-architecture model sized for ``tokenizer``.

    Args:
        tokenizer: The tokenizer the model will read (its vocabulary size and special tokens
            fix the embedding table).
        config: Architecture, or the name of one of :data:`SCRATCH_PRESETS` (``smoke``,
            ``demo``, ``gpu``).
        seed: Seed of the weight initialisation; ``None`` uses torch's current state.

    Returns:
        A ``LlamaForCausalLM`` in float32, all parameters trainable.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    if isinstance(config, str):
        if config not in SCRATCH_PRESETS:
            raise ValueError(
                f"unknown scratch preset {config!r}; choose one of {list(SCRATCH_PRESETS)}"
            )
        config = SCRATCH_PRESETS[config]
    _ensure_pad_token(tokenizer)
    llama_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads or config.num_heads,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=config.tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if seed is not None:
        torch.manual_seed(seed)
    return LlamaForCausalLM(llama_config)


def _quantization_config(quantization: Quantization):  # -> BitsAndBytesConfig | None
    from transformers import BitsAndBytesConfig

    if quantization == "none":
        return None
    if quantization == "4bit":
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if bf16 else torch.float32,
            # FSDP shards floating-point tensors only: the packed 4-bit weights are then stored
            # as bfloat16 (FSDP-QLoRA, bitsandbytes' docs/fsdp_qlora).
            bnb_4bit_quant_storage=torch.bfloat16 if _fsdp() else torch.uint8,
        )
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise ValueError(f"quantization must be 'none', '4bit' or '8bit', got {quantization!r}")


def _fsdp() -> bool:
    """Whether ``accelerate launch`` started this process with an FSDP config."""
    return os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true")


def _load_base(
    name_or_path: str | Path,
    *,
    quantization: Quantization,
    dtype: torch.dtype | None,
    trust_remote_code: bool,
) -> PreTrainedModel:
    from transformers import AutoModelForCausalLM

    quantization_config = _quantization_config(quantization)
    options: dict = {"use_safetensors": True, "trust_remote_code": trust_remote_code}
    if quantization_config is not None:
        options["quantization_config"] = quantization_config
        if _fsdp():  # FSDP places (and shards) the weights itself
            dtype = dtype or torch.bfloat16
        elif torch.cuda.is_available():  # each launched process on its own GPU
            options["device_map"] = {"": resolve_device("cuda").index or 0}
        else:
            options["device_map"] = "cpu"
    if dtype is not None:
        options["dtype"] = dtype
    return AutoModelForCausalLM.from_pretrained(str(name_or_path), **options)


def pretrained_model(
    name_or_path: str | Path,
    *,
    lora: LoRAConfig | None = LoRAConfig(),  # noqa: B008 (frozen dataclass, safe default)
    quantization: Quantization = "none",
    dtype: torch.dtype | None = None,
    gradient_checkpointing: bool = False,
    trust_remote_code: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A pretrained causal LM (local folder or hub id) and its own tokenizer, with adapters.

    Args:
        name_or_path: Folder written by ``save_pretrained`` or a hub id.
        lora: Adapter settings; ``None`` returns the base model with all weights trainable
            (only sensible for small models in full precision).
        quantization: ``"4bit"`` (nf4 with double quantization: QLoRA), ``"8bit"``
            (LLM.int8) or ``"none"``. Both bitsandbytes modes also run on a CPU.
        dtype: Weight dtype of the non-quantized layers (default: the checkpoint's).
        gradient_checkpointing: Recompute activations in the backward pass (saves memory on
            large models, costs time).
        trust_remote_code: Let transformers run model code shipped with the checkpoint.

    Returns:
        ``(model, tokenizer)``; with ``lora`` the model is a ``PeftModel`` whose only
        trainable parameters are the adapters.
    """
    from transformers import AutoTokenizer

    if quantization != "none" and lora is None:
        raise ValueError("quantized weights cannot be trained directly; pass a LoRAConfig")
    tokenizer = AutoTokenizer.from_pretrained(
        str(name_or_path), trust_remote_code=trust_remote_code
    )
    _ensure_pad_token(tokenizer)
    model = _load_base(
        name_or_path, quantization=quantization, dtype=dtype, trust_remote_code=trust_remote_code
    )
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if lora is None:
        return model, tokenizer
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if quantization != "none":
        # Casts layer norms to float32 and lets gradients reach the adapters' inputs.
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing
        )
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    peft_config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_config), tokenizer


def build_model(
    config: LLMConfig, *, tokenizer: PreTrainedTokenizerBase | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model (and tokenizer) a :class:`LLMConfig` describes, ready to fine-tune.

    Args:
        config: The LLM configuration.
        tokenizer: The kit's tokenizer, required for ``config.scratch`` (see
            ``flowllm_kit.text``); a pretrained model brings its own and ignores this.
    """
    if config.scratch is not None:
        if tokenizer is None:
            raise ValueError("a scratch model needs the kit's tokenizer")
        return scratch_model(tokenizer, config=config.scratch, seed=config.finetune.seed), tokenizer
    assert config.pretrained is not None
    # The adapters' initial weights follow the run's seed, as a scratch model's do: the same
    # config gives the same adapters in any process (a launched run's ranks included).
    with torch.random.fork_rng():
        torch.manual_seed(config.finetune.seed)
        return pretrained_model(
            config.pretrained, lora=config.lora, quantization=config.quantization
        )


def count_parameters(model: torch.nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (4-bit weights count as stored, two values per byte)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def merge_lora(model: PreTrainedModel) -> PreTrainedModel:
    """Fold LoRA adapters into the base weights: a plain model with the same outputs.

    Only full-precision bases can be merged exactly; merging into 4- or 8-bit weights would
    round the update away, so it is refused.

    Raises:
        ValueError: If ``model`` has no adapters or its base weights are quantized.
    """
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        raise ValueError("merge_lora needs a PeftModel")
    if getattr(model.base_model.model, "is_quantized", False):
        raise ValueError(
            "cannot merge adapters into quantized weights exactly; reload the base model in "
            "full precision (load_model(..., quantization='none')) and merge that"
        )
    return model.merge_and_unload()


def load_model(
    path: str | Path,
    *,
    quantization: Quantization | None = None,
    trust_remote_code: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a fine-tuned model and its tokenizer from a folder written by ``save_pretrained``.

    A folder with ``adapter_config.json`` holds LoRA adapters: the base model it names is
    loaded first (quantized as at training time, unless ``quantization`` overrides it) and
    the adapters on top.

    Args:
        path: The model folder (``<run>/model`` after :func:`flowllm_kit.llm.finetune`).
        quantization: Override of the base model's loading mode (adapters only).
        trust_remote_code: Let transformers run model code shipped with the checkpoint.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    _ensure_pad_token(tokenizer)
    adapter_file = path / "adapter_config.json"
    if not adapter_file.is_file():
        model = AutoModelForCausalLM.from_pretrained(
            str(path), use_safetensors=True, trust_remote_code=trust_remote_code
        )
        return model.eval(), tokenizer
    from peft import PeftModel

    base_path = json.loads(adapter_file.read_text())["base_model_name_or_path"]
    if quantization is None:
        kit_config = path.parent / LLM_CONFIG_JSON
        quantization = (
            json.loads(kit_config.read_text()).get("quantization", "none")
            if kit_config.is_file()
            else "none"
        )
    base = _load_base(
        base_path, quantization=quantization, dtype=None, trust_remote_code=trust_remote_code
    )
    model = PeftModel.from_pretrained(base, str(path))
    return model.eval(), tokenizer
