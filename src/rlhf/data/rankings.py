"""A ranking -> the ordered pairs (better, worse) it yields (paper section 3.5), and
the agreement of two rankings of the same responses over those pairs (section 3.4).

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


def pair_agreement(a: list[list[int]], b: list[list[int]], responses: list[str] | None = None) -> tuple[int, int]:
    """(agreeing pairs, counted pairs) between two rankings (groups, best first) of the same K responses.

    A pair of responses counts when both rankings order it strictly, and agrees when they
    order it the same way. A pair either ranking ties is left out: a tie is neither agreement
    nor disagreement. Given the texts, `responses`, a pair of identical texts is left out
    too: nobody can prefer a text to itself, so how a strict order puts the two copies is
    noise. Two strict rankings of K distinct texts count C(K, 2) pairs.
    """
    ordered_a, ordered_b = set(ranking_pairs(a)), set(ranking_pairs(b))
    if responses is not None:
        ordered_a = {(w, l) for w, l in ordered_a if responses[w] != responses[l]}
    agree = len(ordered_a & ordered_b)
    disagree = len({(l, w) for w, l in ordered_a} & ordered_b)
    return agree, agree + disagree
