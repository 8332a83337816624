"""Rows of different lengths in groups of similar length, so that each forward pads less.

PPO's micro-batches and rollout scoring (episodes: a left-padded prompt and a right-padded
response) and the reward model's rows (prompt + response, right-padded) both use it. Any
grouping computes the same sums; the grouping only decides how many padded tokens the
forwards compute and how many forwards there are.
"""

from __future__ import annotations


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


def padding_fraction(groups: list[list[int]], prompt_lens: list[int], response_lens: list[int]) -> float:
    """Share of the tokens these groups' forwards compute that are padding."""
    padded = sum(len(g) * (max(prompt_lens[i] for i in g) + max(response_lens[i] for i in g)) for g in groups)
    real = sum(prompt_lens[i] + response_lens[i] for g in groups for i in g)
    return 1 - real / max(padded, 1)
