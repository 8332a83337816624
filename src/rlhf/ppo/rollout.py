"""Rollout: sample responses with a KV cache, then score them with the policy, the
reference, the value model and the reward model.

Layout of a batch of episodes (B episodes, P prompt tokens, R = max_new_tokens):
prompts are left-padded to (B, P) and responses right-padded to (B, R), so the
concatenation (B, P + R) has every response starting at column P and the logits that
predict response token t sit at column P - 1 + t. Position ids come from the
attention mask, so a row's numbers do not depend on how much padding it got.

Training and scoring run episodes in groups of similar length (`core/groups.py`), each
trimmed to its own longest prompt and response: fewer padded tokens per forward.

Sampling draws one uniform number per (episode, token) from a generator seeded by the
episode's global index, and picks the token by inverse CDF. An episode's response then
depends on its own prompt and the weights only: the same with 1 or 2 processes, in any
batch, and after a resume.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields

import torch
from torch import nn

from rlhf.core.generate import positions_from_mask
from rlhf.core.lm import response_logits
from rlhf.core.ops import entropy_from_logits, token_logprobs
from rlhf.core.reward import last_token_index
from rlhf.core.streams import run_pieces


def trim_bounds(prompt_mask: torch.Tensor, response_mask: torch.Tensor) -> tuple[int, int]:
    """(first prompt column that is not padding in every row, response columns up to the longest)."""
    return int(prompt_mask.any(0).long().argmax()), int(response_mask.any(0).long().sum())


def reward_scores(reward_model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The reward model's score at each episode's last real token, offset removed. (B, T) -> (B,).
    Position ids skip the left padding, so the score equals that of the unpadded sequence."""
    values = reward_model.values(ids, mask, positions_from_mask(mask))  # (B, T)
    return values[torch.arange(ids.shape[0], device=ids.device), last_token_index(mask)]


class PolicyAndValue(nn.Module):
    """The two trained models as one module, so DDP syncs both in one backward. The value model
    is a separate network (paper: initialised from the reward model), not a head on the policy."""

    def __init__(self, policy, value):
        super().__init__()
        self.policy = policy
        self.value = value

    def forward(self, ids, mask, prompt_len: int, ptx_ids=None, ptx_mask=None, policy: bool = True,
                value: bool = True):
        """(logits (B, R, V), values (B, R), ptx_logits (p, L-1, V)) of episodes (B, P+R) and pretraining rows
        (p, L); a model turned off (`policy` or `value` false) runs nothing and gives None."""
        logits = values = ptx_logits = None
        if policy:
            logits = response_logits(self.policy, ids, mask, prompt_len)  # (B, R, V)
            if ptx_ids is not None and ptx_ids.shape[0] > 0:
                ptx_logits = self.policy(input_ids=ptx_ids, attention_mask=ptx_mask, use_cache=False).logits[:, :-1]
        if value:  # V(state before response token t) is read where the logits for token t are
            values = self.value.values(ids, mask, positions_from_mask(mask))[:, prompt_len - 1 : -1]  # (B, R)
        return logits, values, ptx_logits


@dataclass
class Rollout:
    """One PPO batch of episodes, with everything the update needs."""

    episode_ids: torch.Tensor  # (B,) global episode number (seeds its sampling noise)
    prompt_ids: torch.Tensor  # (B, P) left-padded
    prompt_mask: torch.Tensor  # (B, P)
    response_ids: torch.Tensor  # (B, R) right-padded
    response_mask: torch.Tensor  # (B, R) True up to and including EOS
    logprobs: torch.Tensor  # (B, R) policy at rollout, with temperature
    ref_logprobs: torch.Tensor  # (B, R) reference (SFT) policy, with temperature
    values: torch.Tensor  # (B, R) value model at rollout
    scores: torch.Tensor  # (B,) reward model (or reward_fn) score, before the no-EOS penalty
    entropy: torch.Tensor  # (B,) mean per-token entropy of the sampling distribution
    advantages: torch.Tensor | None = None  # (B, R) whitened GAE advantages, once step 4 has run
    returns: torch.Tensor | None = None  # (B, R) advantages + values, the value model's targets

    def __len__(self) -> int:
        return self.episode_ids.shape[0]

    def select(self, idx: list[int] | torch.Tensor) -> "Rollout":
        idx = torch.as_tensor(idx, dtype=torch.long, device=self.episode_ids.device)
        return Rollout(**{f.name: x[idx] for f in fields(self) if (x := getattr(self, f.name)) is not None})

    def trimmed(self) -> "Rollout":
        """Drop prompt columns that are padding in every row and response columns past every
        row's end: less compute, and a micro-batch's numbers do not depend on its neighbours."""
        first, width = trim_bounds(self.prompt_mask, self.response_mask)
        out = {}
        for f in fields(self):
            if (x := getattr(self, f.name)) is not None:
                out[f.name] = x[:, first:] if f.name.startswith("prompt") else x[:, :width] if x.dim() == 2 else x
        return Rollout(**out)


def gather_rollout(rollout: Rollout, accelerator, pad_id: int) -> Rollout:
    """Every process gets the whole global batch (in process order), prompts re-padded to the
    longest anywhere. The update then needs no cross-process statistics: whitening, mini-batch
    order and early stopping see the same numbers on every process, and with one process."""
    if accelerator.num_processes == 1:
        return rollout
    P = int(accelerator.gather(torch.tensor([rollout.prompt_ids.shape[1]], device=rollout.prompt_ids.device)).max())
    out = {}
    for f in fields(rollout):
        if (x := getattr(rollout, f.name)) is None:
            continue
        if f.name.startswith("prompt"):  # (b, P_mine) -> (b, P), padded on the left
            x = torch.nn.functional.pad(x, (P - x.shape[1], 0), value=0 if f.name == "prompt_mask" else pad_id)
        out[f.name] = accelerator.gather(x.contiguous())
    return Rollout(**out)


class Reference(nn.Module):
    """The frozen SFT policy; its forward gives the logits of response tokens. A copy by default, or with
    LoRA the policy itself with its adapter disabled (no second copy of the weights). A module of its own
    so that under FSDP its forward is the one that gathers its weights (core/fsdp.py)."""

    def __init__(self, model, lora_policy=None):
        super().__init__()
        self.model = model if lora_policy is None else lora_policy
        self._lora = lora_policy is not None

    def context(self):
        return self.model.disable_adapter() if self._lora else contextlib.nullcontext()

    def forward(self, ids, mask, prompt_len: int) -> torch.Tensor:
        """(B, P+R) -> (B, R, V), as core/lm.response_logits."""
        with self.context():
            return response_logits(self.model, ids, mask, prompt_len)


def score_episodes(policy_and_value: PolicyAndValue, reference: Reference, reward_model, prompt_ids, prompt_mask,
                   response_ids, response_mask, temperature: float, groups: list[list[int]],
                   autocast=contextlib.nullcontext, side_by_side: bool = False) -> dict[str, torch.Tensor]:
    """logprobs, ref_logprobs, values, scores and entropy of sampled episodes, one forward per group of
    episode indices (`core/groups.length_groups`), each trimmed of the padding its rows share; per-token outputs are 0
    past a group's longest response. Scores are the reward model's (none without one), before any no-EOS penalty. The
    policy-side models (policy, reference) and the value-side ones (value, reward) share no weights: with
    `side_by_side` they run on a core each (`core/streams.py`). `autocast` is a context factory, entered in
    whichever thread does the work. Each model runs through its own forward (the reward model's `values`), which
    under FSDP gathers its weights: every process must then pass the same number of groups."""
    B, R = response_ids.shape

    def rows(group):
        idx = torch.tensor(group, device=prompt_ids.device)
        first, width = trim_bounds(prompt_mask[idx], response_mask[idx])
        r_ids, r_mask = response_ids[idx, :width], response_mask[idx, :width]
        ids = torch.cat([prompt_ids[idx, first:], r_ids], 1)  # (b, P' + R')
        mask = torch.cat([prompt_mask[idx, first:], r_mask], 1)
        return ids, mask, ids.shape[1] - width, r_ids, r_mask

    def policy_side() -> list[dict]:
        parts = []
        with torch.no_grad(), autocast():
            for group in groups:
                ids, mask, P, r_ids, r_mask = rows(group)
                logits, _, _ = policy_and_value(ids, mask, P, value=False)  # (b, R', V)
                ent = entropy_from_logits(logits.float() / temperature)  # (b, R')
                part = {"logprobs": token_logprobs(logits, r_ids, temperature),
                        "entropy": (ent * r_mask).sum(-1) / r_mask.sum(-1).clamp(min=1)}
                del logits
                part["ref_logprobs"] = token_logprobs(reference(ids, mask, P), r_ids, temperature)
                parts.append(part)
        return parts

    def value_side() -> list[dict]:
        parts = []
        with torch.no_grad(), autocast():
            for group in groups:
                ids, mask, P, _, _ = rows(group)
                part = {"values": policy_and_value(ids, mask, P, policy=False)[1]}  # (b, R')
                if reward_model is not None:  # None: the caller scores with a Python reward_fn
                    part["scores"] = reward_scores(reward_model, ids, mask)
                parts.append(part)
        return parts

    sides = run_pieces(policy_side, value_side, side_by_side=side_by_side)
    order = torch.tensor([i for g in groups for i in g], device=prompt_ids.device)
    out = {}
    for parts in sides:
        for key in parts[0]:
            pieces = [p[key] for p in parts]
            if pieces[0].dim() == 2:  # (b, R') -> (b, R), zeros past the group's longest response
                pieces = [torch.nn.functional.pad(x, (0, R - x.shape[1])) for x in pieces]
            merged = torch.cat(pieces)
            out[key] = torch.empty_like(merged).index_copy_(0, order, merged)
    return out
