"""Small tensor functions shared by the stages. Masks are True where a token counts.

Shape legend: B batch, K responses per prompt, P pairs, T tokens, V vocab, H hidden.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_rows(rows: list[list[int]], pad_id: int, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows of different lengths as (B, T) ids and attention mask, T the longest row. Padded on the
    right, or on the `left` for prompts that generation continues (every row's last token in the last column)."""
    T = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(rows), T), dtype=torch.long)  # (B, T)
    for b, row in enumerate(rows):
        cols = slice(T - len(row), T) if left else slice(0, len(row))
        ids[b, cols] = torch.tensor(row, dtype=torch.long)
        mask[b, cols] = 1
    return ids, mask


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        n = mask.sum()
        var = var * n / (n - 1).clamp(min=1)
    return var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked entries; masked-out entries come back as 0."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log p(label) under softmax(logits / temperature). (..., V), (...) -> (...).

    The temperature used to sample must be the one used here (details checklist)."""
    if temperature != 1.0:
        logits = logits / temperature
    logits = logits.float()
    return torch.gather(logits.log_softmax(-1), -1, labels.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) over the last axis. (..., V) -> (...)."""
    logits = logits.float()
    logp = logits.log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)


def cross_entropy_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross entropy over already-selected positions. (N, V), (N,) -> ()."""
    return F.cross_entropy(logits.float(), labels, reduction="sum")
