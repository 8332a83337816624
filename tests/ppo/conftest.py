"""A tiny PPO world: a random tiny GPT-2 policy, prompts, pretraining text, and a reward
model trained (in a few seconds) on a hidden rule the policy can learn: the share of
tokens whose id is a multiple of RULE_MOD."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

RULE_MOD = 8


def rule_score(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The hidden rule: 4 x the share of attended tokens with id % RULE_MOD == 0. (B, T) -> (B,)."""
    hit = ((ids % RULE_MOD) == 0) & mask.bool()
    return 4.0 * hit.sum(-1) / mask.sum(-1)


def train_rule_reward_model(policy_dir: Path, out: Path, steps: int = 120, seed: int = 0) -> Path:
    """Regress a reward model (body + head, from the policy) onto rule_score for random sequences."""
    from rlhf.core.reward import reward_model_from_lm

    torch.manual_seed(seed)
    rm = reward_model_from_lm(str(policy_dir), dropout=0.0, seed=seed)
    vocab = len(rm.tokenizer)
    opt = torch.optim.Adam(rm.parameters(), lr=5e-3)
    for _ in range(steps):
        ids = torch.randint(0, vocab, (32, 16))  # (B, T)
        # Enrich some rows in rule tokens so high scores are seen, not only the ~1/RULE_MOD base rate.
        rich = torch.rand(32, 1) * torch.rand(32, 16) > 0.5
        ids = torch.where(rich, (ids // RULE_MOD) * RULE_MOD, ids)
        mask = torch.ones_like(ids)
        loss = ((rm(ids, mask) - rule_score(ids, mask)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    rm.save(out)
    return out


@pytest.fixture(scope="session")
def ppo_world(tiny_model_factory, tmp_path_factory):
    root = tmp_path_factory.mktemp("ppo-world")
    policy = tiny_model_factory("gpt2")
    rm = train_rule_reward_model(policy, root / "rm")
    words = ["hello", "world", "question", "answer", "good", "bad", "fox", "dog", "seal", "bear"]
    prompts = root / "prompts.jsonl"
    with prompts.open("w") as f:
        for i in range(64):
            f.write(json.dumps({"id": f"p-{i:03d}", "prompt": f"{words[i % 10]} {words[(i * 3) % 10]} {i}"}) + "\n")
    pretrain = root / "pretrain.jsonl"
    with pretrain.open("w") as f:
        for i in range(64):
            f.write(json.dumps({"text": " ".join(words[(i + j) % 10] for j in range(12))}) + "\n")
    return {"policy": str(policy), "reward_model": str(rm), "prompts_file": str(prompts), "pretrain_file": str(pretrain)}
