"""The pairwise agreement of two rankings, against pairs counted by hand (ranking_pairs: tests/rm/test_loss.py)."""

from __future__ import annotations

from rlhf.data import pair_agreement


def test_strict_rankings_count_every_pair():
    assert pair_agreement([[0], [1], [2], [3]], [[0], [1], [2], [3]]) == (6, 6)  # C(4, 2)
    assert pair_agreement([[0], [1], [2], [3]], [[3], [2], [1], [0]]) == (0, 6)
    # only (0,1) is swapped
    assert pair_agreement([[1], [0], [2]], [[0], [1], [2]]) == (2, 3)


def test_a_pair_tied_on_either_side_is_left_out():
    # (0,1) tied in b: left out; (0,2) and (1,2) agree
    assert pair_agreement([[0], [1], [2]], [[0, 1], [2]]) == (2, 2)
    a, b = [[0, 1], [2, 3]], [[0], [2], [1, 3]]
    # (0,1) and (2,3) tied in a, (1,3) tied in b; (0,2) and (0,3) agree, (1,2) is swapped
    assert pair_agreement(a, b) == (2, 3)
    assert pair_agreement(b, a) == (2, 3)


def test_a_pair_of_identical_texts_is_left_out_when_the_texts_are_given():
    responses = ["x", "y", "x", "z"]  # 0 and 2 are the same text
    a, b = [[0], [1], [2], [3]], [[2], [1], [0], [3]]
    # (0,1) and (1,2) swapped, (0,2) swapped too but the same text; (0,3), (1,3), (2,3) agree
    assert pair_agreement(a, b) == (3, 6)
    assert pair_agreement(a, b, responses) == (3, 5)
    assert pair_agreement(b, a, responses) == (3, 5)
    # identical texts that agree are left out as well: agreement is over pairs one can prefer
    assert pair_agreement(a, a, responses) == (5, 5)


def test_no_pair_both_ordered_strictly_counts_nothing():
    assert pair_agreement([[0, 1, 2]], [[0], [1], [2]]) == (0, 0)
    assert pair_agreement([[0], [1], [2, 3]], [[0, 1, 2, 3]]) == (0, 0)
    assert pair_agreement([[0], [1]], [[1], [0]], ["same", "same"]) == (0, 0)
