"""The K-way ranking loss of InstructGPT (paper section 3.5, eq. 1):

    loss = -1/C(K,2) * sum over pairs (w better than l) of log sigmoid(r_w - r_l)

taken per prompt over the pairs its ranking yields (ties give none, and the mean
is then over the pairs that exist), then averaged over prompts.
Shape legend: N responses in the micro-batch (all prompts' K flattened), P pairs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ranking_loss(
    scores: torch.Tensor,  # (N,) one reward per response
    pairs: torch.Tensor,  # (P, 2) flat indices (better, worse) into scores
    pair_prompt: torch.Tensor,  # (P,) which prompt of the micro-batch each pair belongs to
    num_prompts: int | torch.Tensor,  # prompts to average over (the whole global batch)
) -> tuple[torch.Tensor, dict]:
    """Sum over this micro-batch's prompts of each prompt's mean pair loss, / num_prompts."""
    margin = scores[pairs[:, 0]] - scores[pairs[:, 1]]  # (P,)
    pair_loss = -F.logsigmoid(margin)  # (P,)
    n = int(pair_prompt.max()) + 1 if pair_prompt.numel() else 0
    per_prompt_sum = torch.zeros(n, dtype=pair_loss.dtype, device=scores.device).index_add_(0, pair_prompt, pair_loss)
    per_prompt_count = torch.zeros(n, dtype=pair_loss.dtype, device=scores.device).index_add_(
        0, pair_prompt, torch.ones_like(pair_loss))
    per_prompt = per_prompt_sum / per_prompt_count.clamp(min=1)  # (n,)
    loss = per_prompt.sum() / num_prompts
    correct = (margin > 0).float() + 0.5 * (margin == 0).float()  # a tied score is half right
    stats = {
        "loss_sum": per_prompt.sum().detach(),
        "prompts": n,
        "pairs": int(margin.numel()),
        "correct": correct.sum().detach(),
        "margin_sum": margin.sum().detach(),
    }
    return loss, stats
