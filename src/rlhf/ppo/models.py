"""The models of `rlhf ppo`: policy, frozen reference, reward model (one or an ensemble) and the value model
started from it, loaded with dropout off; and final/trained_against.json, the record of what reward a policy
was optimised against (read by eval/guard.py)."""

from __future__ import annotations

from pathlib import Path

import torch

from rlhf.config import ConfigError
from rlhf.core.io import TRAINED_AGAINST, atomic_write_json, weights_sha256
from rlhf.core.models import apply_lora, load_causal_lm, set_dropout
from rlhf.core.reward import load_reward_model, reward_model_paths
from rlhf.ppo.config import PPOConfig
from rlhf.ppo.rollout import Reference


def disable_dropout(module: torch.nn.Module) -> None:
    """Dropout off in every model of the RL loop (details checklist): with it, the same tokens
    get different log-probs at rollout and in training, and the PPO ratio is noise."""
    for m in module.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        for attr in ("attention_dropout", "dropout"):  # functional dropout rates kept on attention modules
            if isinstance(getattr(m, attr, None), float):
                setattr(m, attr, 0.0)


def load_models(config: PPOConfig, device):
    """(policy, reference, reward model, value model). Only policy and value are trained."""
    policy = load_causal_lm(config.policy, dropout=0.0, gradient_checkpointing=config.gradient_checkpointing,
                            lora=config.lora)
    if config.lora.enabled:
        reference = Reference(None, lora_policy=policy)
    else:
        ref = load_causal_lm(config.policy, dropout=0.0).to(device).eval().requires_grad_(False)
        reference = Reference(ref)
    # With reward_fn the reward model only seeds the value model: no second copy in memory.
    reward_model = None if config.reward_fn else \
        load_reward_model(config.reward_model, device=str(device)).requires_grad_(False)
    # The value model starts from one reward model: an ensemble's first member.
    value = load_reward_model(config.value_model or reward_model_paths(config.reward_model)[0]).train()
    set_dropout(value.body.config, 0.0)
    disable_dropout(value)
    if config.gradient_checkpointing:
        value.body.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.lora.enabled:
        value.body = apply_lora(value.body, config.lora, task_type="FEATURE_EXTRACTION")
    disable_dropout(policy)
    return policy, reference, reward_model, value


def check_same_tokens(tokenizer, reward_tokenizer, config: PPOConfig) -> None:
    """The reward model reads the policy's token ids directly, so the vocabularies must match."""
    if tokenizer.get_vocab() != reward_tokenizer.get_vocab():
        raise ConfigError(f"the policy ({config.policy}) and reward model ({config.reward_model}) use different "
                          "tokenizers; train the reward model from the same base as the policy")


def record_reward(config: PPOConfig, final: Path) -> None:
    """final/trained_against.json: the reward this policy was optimised against, by path and by
    weights hash, so `rlhf eval` can refuse to pass off that reward model's verdict as an
    evaluation even after the folders are copied or renamed."""
    members = reward_model_paths(config.reward_model)
    atomic_write_json(final / TRAINED_AGAINST, {
        # An ensemble's members, comma-separated in both fields (eval/guard.py reads them one by one).
        "reward_model": ",".join(str(Path(p).resolve()) for p in members),
        "reward_model_sha256": ",".join(weights_sha256(p) for p in members),
        "reward_fn": config.reward_fn,
    })
