"""Rows of different lengths in groups of similar length, so that each forward pads less.

PPO's micro-batches and rollout scoring (episodes: a left-padded prompt and a right-padded
response) and the reward model's rows (prompt + response, right-padded) both use it. Any
grouping computes the same sums; the grouping only decides how many padded tokens the
forwards compute and how many forwards there are. The reward model's collator pads its rows
in groups (`padded_groups`) and `GroupedForward` runs them; the model itself knows nothing of it.
"""

from __future__ import annotations

import torch
from torch import nn

from rlhf.core.ops import pad_rows


def consecutive_groups(n: int, size: int) -> list[list[int]]:
    """Row indices 0..n-1 in runs of `size`, in order: the grouping when lengths are not looked at."""
    return [list(range(i, min(i + size, n))) for i in range(0, n, size)]


def length_groups(prompt_lens: list[int], response_lens: list[int], max_size: int, cost: float) -> list[list[int]]:
    """Row indices split into groups of at most `max_size` rows of similar length, minimising the padded
    tokens (group size x (longest prompt + longest response)) plus `cost` tokens per group, the price of
    one more forward. Rows are sorted by total length and cut into runs by dynamic programming. Rows of
    one part (the reward model's) pass their lengths as prompt_lens and zeros as response_lens."""
    n = len(prompt_lens)
    order = sorted(range(n), key=lambda i: (prompt_lens[i] + response_lens[i], prompt_lens[i], i))
    best, cut = [0.0] + [float("inf")] * n, [0] * (n + 1)  # best[j]: cheapest split of order[:j]
    for j in range(1, n + 1):
        longest_p = longest_r = 0
        for i in range(j - 1, max(j - max_size, 0) - 1, -1):  # last group = order[i:j]
            longest_p, longest_r = max(longest_p, prompt_lens[order[i]]), max(longest_r, response_lens[order[i]])
            padded = (j - i) * (longest_p + longest_r) + cost
            if padded >= best[j]:  # only grows as the group does, and best[i] >= 0: no larger group can win
                break
            total = best[i] + padded
            if total < best[j]:
                best[j], cut[j] = total, i
    groups, j = [], n
    while j > 0:
        groups.append(order[cut[j] : j])
        j = cut[j]
    return groups[::-1]


def padded_groups(rows: list[list[int]], pad_id: int, cost: float | None) -> tuple[list, torch.Tensor]:
    """Token rows right-padded in groups of similar length (`length_groups` at `cost` padded tokens a forward;
    one group of all rows when `cost` is None), each as wide as its own longest row: [(ids (b, T_g), mask
    (b, T_g)), ...], and row_position (N,), where row n's output lands in the groups' outputs concatenated."""
    n = len(rows)
    members = [list(range(n))] if cost is None else \
        [sorted(g) for g in length_groups([len(r) for r in rows], [0] * n, n, cost)]  # rows in batch order
    groups = [pad_rows([rows[i] for i in g], pad_id) for g in members]
    return groups, torch.argsort(torch.tensor([i for g in members for i in g]))  # (N,)


class GroupedForward(nn.Module):
    """A per-row model ((b, T) ids and mask -> (b,) outputs) run over padded_groups in one call, its outputs
    back in row order. One module call keeps DDP at one forward per backward."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, groups: list[tuple[torch.Tensor, torch.Tensor]], row_position: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.model(ids, mask) for ids, mask in groups])[row_position]  # (N,)


def padding_fraction(groups: list[list[int]], prompt_lens: list[int], response_lens: list[int]) -> float:
    """Share of the tokens these groups' forwards compute that are padding."""
    padded = sum(len(g) * (max(prompt_lens[i] for i in g) + max(response_lens[i] for i in g)) for g in groups)
    real = sum(prompt_lens[i] + response_lens[i] for g in groups for i in g)
    return 1 - real / max(padded, 1)
