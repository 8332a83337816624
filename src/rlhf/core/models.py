"""Loading tokenizers and causal LMs from a local folder or a hub name.

Every stage loads models through here so that dropout, dtype, attention kernel,
gradient checkpointing and LoRA mean the same thing everywhere.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

log = logging.getLogger(__name__)

# Config attribute names under which architectures keep their dropout rates. The
# paper fine-tuned with residual dropout 0.2 (section 3.5); RL runs use 0 (the
# implementation-details checklist: dropout makes logprobs of the same tokens differ
# between rollout and training).
_DROPOUT_KEYS = (
    "resid_pdrop", "embd_pdrop", "attn_pdrop",  # GPT-2
    "hidden_dropout", "attention_dropout",  # GPT-NeoX, Llama
    "hidden_dropout_prob", "attention_probs_dropout_prob", "dropout",
)


@dataclass
class LoraConfig:
    """LoRA through `peft`: train low-rank adapters instead of all weights."""

    r: int = 0
    """Adapter rank; 0 turns LoRA off and trains every weight."""
    alpha: float = 16.0
    """Scaling numerator: adapters are scaled by alpha / r."""
    dropout: float = 0.0
    """Dropout on the adapter input."""
    targets: list[str] = field(default_factory=lambda: ["all-linear"])
    """Module names to adapt (peft's target_modules); `all-linear` adapts every linear layer but the output head."""

    @property
    def enabled(self) -> bool:
        return self.r > 0


def resolve_dtype(name: str) -> torch.dtype:
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if name not in table:
        raise ValueError(f"unknown dtype {name!r}; one of {sorted(table)}")
    return table[name]


def model_source(name_or_path: str) -> str:
    """A local folder if it exists, else a hub name (left to `transformers` to fetch)."""
    path = Path(name_or_path)
    if path.exists():
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path} exists but holds no config.json: not a Hugging Face model folder")
        return str(path)
    if str(name_or_path).startswith((".", "/")) or str(name_or_path).count("/") > 1:
        raise FileNotFoundError(f"model folder {name_or_path} does not exist")
    return str(name_or_path)


def load_tokenizer(name_or_path: str, padding_side: str = "right", chat_template: str = ""):
    """A tokenizer with a pad token distinct from EOS where possible, and the chat template
    `chat_template` names (core/tokens.py) in place of its own when given.

    Using EOS as pad hides real EOS tokens from masks built on pad ids (details
    checklist: "pad token is not EOS"); we add a pad token only when the model has
    none, and then masks come from attention masks, never from token ids."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_source(name_or_path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    tok.padding_side = padding_side
    if chat_template:
        from rlhf.core.tokens import set_chat_template

        set_chat_template(tok, chat_template)
    return tok


# Activations whose fused PyTorch kernel computes the same formula. GPT-2's `gelu_new` is the tanh
# approximation of GELU written as separate tanh/pow/mul ops (10% of a small model's step on CPU);
# `gelu_pytorch_tanh` is that formula in one kernel.
_FUSED_ACTIVATIONS = {"gelu_new": "gelu_pytorch_tanh"}


def use_fused_activations(config) -> None:
    for key in ("activation_function", "hidden_act"):
        name = getattr(config, key, None)
        if isinstance(name, str) and name in _FUSED_ACTIVATIONS:
            setattr(config, key, _FUSED_ACTIVATIONS[name])


def set_dropout(config, rate: float | None) -> None:
    """Set every dropout rate the architecture exposes; None keeps the model's own."""
    if rate is None:
        return
    for key in _DROPOUT_KEYS:
        if hasattr(config, key) and isinstance(getattr(config, key), (int, float)):
            setattr(config, key, rate)


def enable_checkpointing(model) -> None:
    """Recompute activations in backward (transformers 5 renamed the switch; older names still work)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def load_causal_lm(
    name_or_path: str,
    dtype: str = "float32",
    dropout: float | None = None,
    gradient_checkpointing: bool = False,
    lora: LoraConfig | None = None,
    attn_implementation: str = "sdpa",
):
    """An AutoModelForCausalLM ready to train, with the given dropout and LoRA."""
    from transformers import AutoConfig, AutoModelForCausalLM

    source = model_source(name_or_path)
    config = AutoConfig.from_pretrained(source)
    set_dropout(config, dropout)
    use_fused_activations(config)
    model = AutoModelForCausalLM.from_pretrained(
        source, config=config, dtype=resolve_dtype(dtype), attn_implementation=attn_implementation
    )
    if gradient_checkpointing:
        enable_checkpointing(model)
        model.config.use_cache = False
    if lora is not None and lora.enabled:
        model = apply_lora(model, lora)
    return model


def apply_lora(model, lora: LoraConfig, task_type: str = "CAUSAL_LM"):
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    targets = lora.targets[0] if lora.targets == ["all-linear"] else lora.targets
    peft_config = PeftLoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets, task_type=task_type
    )
    model = get_peft_model(model, peft_config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info("LoRA r=%d: training %d of %d parameters (%.2f%%)", lora.r, trainable, total, 100 * trainable / total)
    return model


def unwrap_for_save(model):
    """The plain transformers model to save: LoRA adapters merged into the weights."""
    if hasattr(model, "merge_and_unload"):
        import copy

        return copy.deepcopy(model).merge_and_unload()
    return model

