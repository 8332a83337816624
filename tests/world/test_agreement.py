"""The world's inter-labeler agreement (`labelers/agreement` in the demo) through the shared counter."""

from __future__ import annotations

import random

import pytest

from rlhf.world import World
from rlhf.world.labelers import agreement
from rlhf.world.responses import sample_response


@pytest.fixture(scope="module")
def world():
    return World(seed=0)


def _agreement_before_unification(prompt_records, labelers, seed=0, k=6):
    """world.labelers.agreement as it was before it used the shared counter (frozen copy)."""
    rng = random.Random(f"{seed}/agreement")
    same = total = 0
    for record in prompt_records:
        responses = [sample_response(labelers[0].gold.kb, record["task"], rng) for _ in range(k)]
        a, b = rng.sample(labelers, 2)
        pos_a = {idx: pos for pos, idx in enumerate(a.rank(record, responses, rng)["ranking"])}
        pos_b = {idx: pos for pos, idx in enumerate(b.rank(record, responses, rng)["ranking"])}
        for i in range(k):
            for j in range(i + 1, k):
                if responses[i] == responses[j]:
                    continue
                same += (pos_a[i] < pos_a[j]) == (pos_b[i] < pos_b[j])
                total += 1
    return same / max(total, 1)


@pytest.mark.parametrize("seed", [0, 3])
def test_agreement_on_the_worlds_labelers_is_unchanged(world, seed):
    records = world.prompts(150, split="valid", stream="agree")
    labelers = world.train_labelers
    assert agreement(records, labelers, seed) == _agreement_before_unification(records, labelers, seed)
