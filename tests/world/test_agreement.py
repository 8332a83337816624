"""The world's inter-labeler agreement (`labelers/agreement` in the demo), on labelers whose
rankings are known, so the share is worked out by hand; its level on the real labelers is
checked in test_world.py."""

from __future__ import annotations

import pytest

from rlhf.world import World
from rlhf.world.labelers import agreement


class TextOrderLabeler:
    """Ranks by text, alphabetically (or reversed); copies of one text in index order (or reversed)."""

    def __init__(self, gold, reverse_texts: bool, reverse_copies: bool, seen: list):
        self.gold, self.reverse_texts, self.reverse_copies, self.seen = gold, reverse_texts, reverse_copies, seen

    def rank(self, record, responses, rng):
        self.seen.append(list(responses))
        by_copy = sorted(range(len(responses)), reverse=self.reverse_copies)
        order = sorted(by_copy, key=lambda i: responses[i], reverse=self.reverse_texts)  # stable: copies keep by_copy
        return {"ranking": order}


@pytest.fixture(scope="module")
def world():
    return World(seed=0)


def labelers(world, reverse_texts, reverse_copies):
    seen: list = []
    a = TextOrderLabeler(world.gold, False, False, seen)
    b = TextOrderLabeler(world.gold, reverse_texts, reverse_copies, seen)
    return [a, b], seen


def test_copies_of_one_text_are_left_out(world):
    # Every pair of different texts is ordered the same way by both; every pair of copies is
    # swapped. Leaving the copies out gives exactly 1; counting them would give less.
    pair, seen = labelers(world, reverse_texts=False, reverse_copies=True)
    assert agreement(world.prompts(40, split="valid", stream="agree"), pair) == 1.0
    assert any(len(set(responses)) < len(responses) for responses in seen)  # copies did occur


def test_opposite_orders_agree_on_no_pair(world):
    # Reversed text order: every pair of different texts is swapped.
    pair, _ = labelers(world, reverse_texts=True, reverse_copies=True)
    assert agreement(world.prompts(40, split="valid", stream="agree"), pair) == 0.0
