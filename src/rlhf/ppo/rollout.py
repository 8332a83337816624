"""Rollout: sample responses with a KV cache, then score them with the policy, the
reference, the value model and the reward model.

Layout of a batch of episodes (B episodes, P prompt tokens, R = max_new_tokens):
prompts are left-padded to (B, P) and responses right-padded to (B, R), so the
concatenation (B, P + R) has every response starting at column P and the logits that
predict response token t sit at column P - 1 + t. Position ids come from the
attention mask, so a row's numbers do not depend on how much padding it got.

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

# The sampler lives in core so SFT's validation-reward selection and eval share it; the names
# stay importable from here.
from rlhf.core.generate import (  # noqa: F401
    episode_noise, left_pad, pick_tokens, positions_from_mask, response_mask_from, sample,
)
from rlhf.core.lm import backbone_and_head
from rlhf.core.ops import entropy_from_logits, token_logprobs
from rlhf.core.reward import last_token_index
from rlhf.core.streams import run_side_by_side


def response_logits(lm, ids: torch.Tensor, mask: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """Logits predicting each response token, unembedding only those. (B, P+R) -> (B, R, V)."""
    body, head = backbone_and_head(lm)
    hidden = body(input_ids=ids, attention_mask=mask, position_ids=positions_from_mask(mask),
                  use_cache=False).last_hidden_state  # (B, P+R, H)
    return head(hidden[:, prompt_len - 1 : -1])  # (B, R, V)


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

    def forward(self, ids, mask, prompt_len: int, ptx_ids=None, ptx_mask=None):
        logits, ptx_logits = self.policy_forward(ids, mask, prompt_len, ptx_ids, ptx_mask)
        return logits, self.value_forward(ids, mask, prompt_len), ptx_logits

    def policy_forward(self, ids, mask, prompt_len: int, ptx_ids=None, ptx_mask=None):
        logits = response_logits(self.policy, ids, mask, prompt_len)  # (B, R, V)
        ptx_logits = None
        if ptx_ids is not None and ptx_ids.shape[0] > 0:
            ptx_logits = self.policy(input_ids=ptx_ids, attention_mask=ptx_mask, use_cache=False).logits[:, :-1]  # (b, L-1, V)
        return logits, ptx_logits

    def value_forward(self, ids, mask, prompt_len: int):
        # V(state before response token t) is read where the logits for token t are.
        return self.value.values(ids, mask, positions_from_mask(mask))[:, prompt_len - 1 : -1]  # (B, R)


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
    scores: torch.Tensor  # (B,) reward model score (no-EOS penalty applied)
    entropy: torch.Tensor  # (B,) mean per-token entropy of the sampling distribution

    def __len__(self) -> int:
        return self.episode_ids.shape[0]

    def select(self, idx: list[int] | torch.Tensor) -> "Rollout":
        idx = torch.as_tensor(idx, dtype=torch.long, device=self.episode_ids.device)
        return Rollout(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def trimmed(self) -> "Rollout":
        """Drop prompt columns that are padding in every row and response columns past every
        row's end: less compute, and a micro-batch's numbers do not depend on its neighbours."""
        first = int(self.prompt_mask.any(0).long().argmax())
        width = int(self.response_mask.any(0).long().sum())
        out = {}
        for f in fields(self):
            x = getattr(self, f.name)
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
        x = getattr(rollout, f.name)
        if f.name.startswith("prompt") and x.shape[1] < P:
            fill = 0 if f.name == "prompt_mask" else pad_id
            x = torch.cat([torch.full((x.shape[0], P - x.shape[1]), fill, dtype=x.dtype, device=x.device), x], 1)
        out[f.name] = accelerator.gather(x.contiguous())
    return Rollout(**out)


class Reference:
    """The frozen SFT policy: a copy by default, or with LoRA the policy itself with its adapter
    disabled (no second copy of the weights)."""

    def __init__(self, model, lora_policy=None):
        self.model = model if lora_policy is None else lora_policy
        self._lora = lora_policy is not None

    def context(self):
        return self.model.disable_adapter() if self._lora else contextlib.nullcontext()


def score_episodes(policy, reference, reward_model, value_model, prompt_ids, prompt_mask, response_ids,
                   response_mask, temperature: float, micro_batch_size: int, autocast=contextlib.nullcontext,
                   side_by_side: bool = False) -> dict[str, torch.Tensor]:
    """logprobs, ref_logprobs, values, scores and entropy of sampled episodes, micro-batch by micro-batch.
    Scores are the reward model's, before any no-EOS penalty. The policy-side models (policy, reference) and
    the value-side ones (value, reward) share no weights: with `side_by_side` they run on a core each
    (`core/streams.py`). `autocast` is a context factory, entered in whichever thread does the work."""
    P = prompt_ids.shape[1]
    chunks = [slice(i, i + micro_batch_size) for i in range(0, prompt_ids.shape[0], micro_batch_size)]

    def rows(sl):
        return torch.cat([prompt_ids[sl], response_ids[sl]], 1), torch.cat([prompt_mask[sl], response_mask[sl]], 1)

    def policy_side() -> dict[str, list]:
        parts: dict[str, list] = {"logprobs": [], "ref_logprobs": [], "entropy": []}
        with torch.no_grad(), autocast():
            for sl in chunks:
                ids, mask = rows(sl)  # (b, P+R) each
                rmask = response_mask[sl]
                logits = response_logits(policy, ids, mask, P)  # (b, R, V)
                parts["logprobs"].append(token_logprobs(logits, response_ids[sl], temperature))
                ent = entropy_from_logits(logits.float() / temperature)  # (b, R)
                parts["entropy"].append((ent * rmask).sum(-1) / rmask.sum(-1).clamp(min=1))
                del logits
                with reference.context():
                    parts["ref_logprobs"].append(token_logprobs(response_logits(reference.model, ids, mask, P),
                                                                response_ids[sl], temperature))
        return parts

    def value_side() -> dict[str, list]:
        parts: dict[str, list] = {"values": [], "scores": []}
        with torch.no_grad(), autocast():
            for sl in chunks:
                ids, mask = rows(sl)
                parts["values"].append(value_model.values(ids, mask, positions_from_mask(mask))[:, P - 1 : -1])
                parts["scores"].append(reward_scores(reward_model, ids, mask))
        return parts

    sides = run_side_by_side(policy_side, value_side) if side_by_side else [policy_side(), value_side()]
    return {k: torch.cat(v) for side in sides for k, v in side.items()}
