"""A ranking -> the ordered pairs (better, worse) it yields (paper section 3.5).

Groups are best first; responses in one group are tied and give no pair.
Without ties a ranking of K responses yields C(K, 2) pairs.
"""

from __future__ import annotations


def ranking_pairs(groups: list[list[int]]) -> list[tuple[int, int]]:
    """[[2], [0, 3], [1]] -> [(2,0), (2,3), (2,1), (0,1), (3,1)]."""
    pairs = []
    for gi, better in enumerate(groups):
        for worse_group in groups[gi + 1 :]:
            for w in better:
                for l in worse_group:
                    pairs.append((w, l))
    return pairs
