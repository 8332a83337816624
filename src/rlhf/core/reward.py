"""The reward model: a causal LM's transformer body with the unembedding replaced
by a scalar head (paper section 3.5), read at the last non-padding token.

Shared by the reward-model stage (trains it), SFT (picks the epoch by validation
reward, as the paper did), PPO (rewards; the value model starts from it) and eval.

Several folders separated by commas load as one `RewardEnsemble` whose reward is the mean of theirs.

Saved folder layout (loads with `rlhf.load_reward_model(path)`):
  config.json, model.safetensors   the body, a plain `transformers` AutoModel
  tokenizer files
  reward_head.safetensors          head.weight (1, H), head.bias (1,)
  reward_model.json                {"offset": float, ...}: score = head(h_last) - offset
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from rlhf.core.io import atomic_replace_dir, atomic_write_json
from rlhf.core.models import (
    LoraConfig, apply_lora, enable_checkpointing, model_source, resolve_dtype, set_dropout, use_fused_activations,
)
from rlhf.core.ops import pad_rows

FORMAT = "rlhf.reward_model/1"


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last attended token in each row, for left or right padding. (B, T) -> (B,)."""
    T = attention_mask.shape[-1]
    return T - 1 - attention_mask.flip(-1).long().argmax(-1)


class RewardModel(nn.Module):
    def __init__(self, body: nn.Module, hidden_size: int, offset: float = 0.0):
        super().__init__()
        self.body = body
        self.head = nn.Linear(hidden_size, 1)
        # lm-human-preferences initialises the reward head with std 1/sqrt(H + 1).
        nn.init.normal_(self.head.weight, std=1.0 / (hidden_size + 1) ** 0.5)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("offset", torch.tensor(float(offset)), persistent=False)
        self.tokenizer = None

    def values(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids=None) -> torch.Tensor:
        """Head output at every position, offset removed. (B, T) -> (B, T). PPO's value model uses this."""
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                           use_cache=False).last_hidden_state  # (B, T, H)
        return self.head(hidden).squeeze(-1).float() - self.offset  # (B, T)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Scalar reward of each sequence, read at its last non-padding token. (B, T) -> (B,)."""
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state  # (B, T, H)
        last = last_token_index(attention_mask)  # (B,)
        h_last = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (B, H)
        return self.head(h_last).squeeze(-1).float() - self.offset  # (B,)

    @torch.no_grad()
    def score(self, prompts: list, responses: list[str], batch_size: int = 16, max_length: int = 1024) -> list[float]:
        """Rewards of (prompt, response) pairs: `rm.score(["Q?"], ["A."]) -> [0.7]`. Prompts
        are plain strings or conversations; over-long prompts are cut from the left."""
        from rlhf.core.tokens import encode_prompt, encode_response, fit_prompt

        if len(prompts) != len(responses):
            raise ValueError(f"score(): {len(prompts)} prompts but {len(responses)} responses")
        tok = self.tokenizer
        rows = []
        for prompt, response in zip(prompts, responses):
            r = encode_response(tok, response)[: max_length - 1]
            p = fit_prompt(encode_prompt(tok, prompt), max_length - len(r), tok.bos_token_id)
            rows.append(p + r)
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        scores: list[float] = []
        for i in range(0, len(rows), batch_size):
            ids, mask = pad_rows(rows[i : i + batch_size], tok.pad_token_id)  # (b, T)
            scores += self(ids.to(device), mask.to(device)).tolist()
        self.train(was_training)
        return scores

    def save(self, path: str | Path, extra: dict | None = None) -> None:
        """Write the folder atomically (temporary folder, then rename)."""
        path = Path(path)
        tmp = path.with_name(f".tmp-{path.name}")
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp)
        body = self.body.merge_and_unload() if hasattr(self.body, "merge_and_unload") else self.body
        body.save_pretrained(tmp)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(tmp)
        save_file({"weight": self.head.weight.detach().float().contiguous(),
                   "bias": self.head.bias.detach().float().contiguous()}, str(tmp / "reward_head.safetensors"))
        atomic_write_json(tmp / "reward_model.json", {"format": FORMAT, "offset": float(self.offset), **(extra or {})})
        atomic_replace_dir(tmp, path)


class RewardEnsemble(nn.Module):
    """Reward models of the same tokenizer read as one: each score (and value) is the members' mean. Members
    trained from the same SFT model on the same comparisons with different seeds err differently where the data
    does not pin the answer down, and their mean is over-optimised later (Coste et al. 2023, "Reward Model
    Ensembles Help Mitigate Overoptimization")."""

    def __init__(self, members: list[RewardModel]):
        super().__init__()
        if not members:
            raise ValueError("a reward model ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.tokenizer = members[0].tokenizer

    def values(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids=None) -> torch.Tensor:
        """(B, T) -> (B, T): the members' per-position values, averaged."""
        return torch.stack([m.values(input_ids, attention_mask, position_ids) for m in self.members]).mean(0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B,): the members' rewards, averaged."""
        return torch.stack([m(input_ids, attention_mask) for m in self.members]).mean(0)

    score = RewardModel.score


def reward_model_paths(spec: str | Path) -> list[str]:
    """The folders of a reward model spec: one folder, or several separated by commas (an ensemble)."""
    paths = [p.strip() for p in str(spec).split(",") if p.strip()]
    if not paths:
        raise ValueError(f"no reward model folder in {str(spec)!r}")
    return paths


def _hidden_size(config) -> int:
    for key in ("hidden_size", "n_embd", "d_model"):
        if hasattr(config, key):
            return int(getattr(config, key))
    raise ValueError(f"cannot find the hidden size in {type(config).__name__}")


def reward_model_from_lm(
    name_or_path: str, dtype: str = "float32", dropout: float | None = None, gradient_checkpointing: bool = False,
    lora: LoraConfig | None = None, seed: int = 0, chat_template: str = "",
) -> RewardModel:
    """A new reward model from a causal LM (normally the SFT model): body kept, unembedding dropped; its
    tokenizer gets `chat_template` (core/tokens.py) when given, and keeps it when saved."""
    from transformers import AutoConfig, AutoModel

    from rlhf.core.models import load_tokenizer

    source = model_source(name_or_path)
    config = AutoConfig.from_pretrained(source)
    set_dropout(config, dropout)
    use_fused_activations(config)
    body = AutoModel.from_pretrained(source, config=config, dtype=resolve_dtype(dtype), attn_implementation="sdpa")
    if gradient_checkpointing:
        enable_checkpointing(body)
    if lora is not None and lora.enabled:
        body = apply_lora(body, lora, task_type="FEATURE_EXTRACTION")
    torch.manual_seed(seed)
    model = RewardModel(body, _hidden_size(config))
    model.tokenizer = load_tokenizer(source, chat_template=chat_template)
    return model


def load_reward_model(path: str | Path, dtype: str = "float32", device: str | None = None) -> RewardModel | RewardEnsemble:
    """Load a reward model folder written by `rlhf rm` (or RewardModel.save); several folders separated by commas
    load as a RewardEnsemble, which scores like one model."""
    paths = reward_model_paths(path)
    if len(paths) == 1:
        return _load_one(paths[0], dtype, device)
    members = [_load_one(p, dtype, device) for p in paths]
    for p, m in zip(paths[1:], members[1:]):
        if m.tokenizer.get_vocab() != members[0].tokenizer.get_vocab():
            raise ValueError(f"reward model ensemble: {p} and {paths[0]} use different tokenizers; "
                             "train every member from the same SFT model")
    return RewardEnsemble(members).eval()


def _load_one(path: str | Path, dtype: str, device: str | None) -> RewardModel:
    from transformers import AutoConfig, AutoModel

    from rlhf.core.models import load_tokenizer

    path = Path(path)
    meta_file = path / "reward_model.json"
    if not meta_file.exists():
        raise FileNotFoundError(f"{path} is not a reward model folder (no reward_model.json); train one with `rlhf rm`")
    meta = json.loads(meta_file.read_text())
    config = AutoConfig.from_pretrained(str(path))
    use_fused_activations(config)
    body = AutoModel.from_pretrained(str(path), config=config, dtype=resolve_dtype(dtype), attn_implementation="sdpa")
    model = RewardModel(body, _hidden_size(body.config), offset=meta.get("offset", 0.0))
    head = load_file(str(path / "reward_head.safetensors"))
    with torch.no_grad():
        model.head.weight.copy_(head["weight"])
        model.head.bias.copy_(head["bias"])
    model.head.to(resolve_dtype(dtype))
    model.tokenizer = load_tokenizer(str(path))
    if device:
        model.to(device)
    return model.eval()
