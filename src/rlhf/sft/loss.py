"""SFT loss: next-token cross entropy on response tokens only."""

from __future__ import annotations

import torch

from rlhf.core.ops import cross_entropy_sum


def sft_loss(logits: torch.Tensor, targets: torch.Tensor, num_tokens: int | torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Summed CE of the selected positions divided by `num_tokens`, the response-token count
    of the whole global batch (so micro-batches and processes add up to the global mean).

    logits (N, V) at positions whose next token is a response token; targets (N,)."""
    total = cross_entropy_sum(logits, targets)  # ()
    loss = total / num_tokens
    return loss, {"loss_sum": total.detach(), "tokens": targets.numel()}
