"""Simulated labelers: the gold standard seen through one person's eyes.

Each labeler weighs helpfulness, honesty and harmlessness a little differently
(log-normal jitter around the gold weights), adds Gaussian noise to every
judgement, and has a writing style (terse or full sentences) and a small slip
rate when writing demonstrations. NOISE was tuned so that two labelers ranking
the same typical model samples agree on ~73% of pairs, as the paper's training
labelers did (72.6 +- 1.5%; held-out labelers 77.3 +- 1.3%); `agreement`
measures it and tests/world pin it to 0.65-0.80. Held-out labelers write no
demonstrations and their rankings are used only for evaluation.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from rlhf.data.rankings import pair_agreement
from rlhf.world.gold import WEIGHTS, GoldStandard
from rlhf.world.responses import _partial, ideal_response, sample_response

NOISE = 0.33  # std of the per-judgement noise on the utility scale ([-1, 1])
N_TRAIN, N_HELDOUT = 12, 4


class HeldOutLabelerError(ValueError):
    """A held-out labeler was asked for training data."""


@dataclass
class Labeler:
    id: str
    weights: tuple[float, float, float]
    noise: float
    style: float
    slip_rate: float
    held_out: bool
    gold: GoldStandard

    def utility(self, prompt_record: dict, response: str) -> float:
        return self.gold.grade(prompt_record, response).utility(self.weights)

    def judge(self, prompt_record: dict, response_a: str, response_b: str) -> float:
        """p(this labeler prefers a over b): the chance the noisy utilities order them so."""
        diff = self.utility(prompt_record, response_a) - self.utility(prompt_record, response_b)
        return 0.5 * (1 + math.erf(diff / (2 * self.noise)))  # Phi(diff / (noise * sqrt 2))

    def rank(self, prompt_record: dict, responses: list[str], rng: random.Random) -> dict:
        """A comparison record (formats.md) for K responses: noisy utilities, best first."""
        grades = [self.gold.grade(prompt_record, r) for r in responses]
        noisy = [g.utility(self.weights) + rng.gauss(0, self.noise) for g in grades]
        order = sorted(range(len(responses)), key=lambda i: -noisy[i])
        likert = [int(min(7, max(1, round(1 + 6 * max(u, 0.0))))) for u in noisy]
        return {
            "prompt": prompt_record["prompt"], "responses": list(responses), "ranking": order,
            "labeler_id": self.id, "prompt_id": prompt_record.get("id"), "likert": likert,
            "flags": [g.flags for g in grades], "category": prompt_record.get("category"),
        }

    def demonstrate(self, prompt_record: dict, rng: random.Random) -> str:
        if self.held_out:
            raise HeldOutLabelerError(f"labeler {self.id} is held out: it writes no training data")
        kb = self.gold.kb
        if rng.random() < self.slip_rate:
            return _partial(kb, prompt_record["task"], rng)
        return ideal_response(kb, prompt_record["task"], rng, style=self.style)


def make_labelers(gold: GoldStandard, seed: int) -> list[Labeler]:
    rng = random.Random(f"{seed}/labelers")
    out = []
    for i in range(N_TRAIN + N_HELDOUT):
        held_out = i >= N_TRAIN
        lab_id = f"H{i - N_TRAIN + 1:02d}" if held_out else f"L{i + 1:02d}"
        weights = tuple(w * math.exp(rng.gauss(0, 0.25)) for w in WEIGHTS)
        out.append(Labeler(lab_id, weights, NOISE * rng.uniform(0.8, 1.2), rng.random(),
                           rng.uniform(0.0, 0.06), held_out, gold))
    return out


def agreement(prompt_records: list[dict], labelers: list[Labeler], seed: int = 0, k: int = 6) -> float:
    """Pairwise inter-labeler agreement on typical model samples: for each prompt,
    two labelers rank the same K sampled responses; the share of response pairs
    they order the same way. Samples often repeat a text, and a pair of identical
    texts is left out (`rlhf.data.pair_agreement`); rankings here never tie."""
    rng = random.Random(f"{seed}/agreement")
    same = total = 0
    for record in prompt_records:
        responses = [sample_response(labelers[0].gold.kb, record["task"], rng) for _ in range(k)]
        a, b = rng.sample(labelers, 2)
        ranking_a = [[i] for i in a.rank(record, responses, rng)["ranking"]]
        ranking_b = [[i] for i in b.rank(record, responses, rng)["ranking"]]
        agree, counted = pair_agreement(ranking_a, ranking_b, responses)
        same, total = same + agree, total + counted
    return same / max(total, 1)
