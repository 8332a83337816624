"""Prompt records from simulated users (formats.md `prompts`, plus a `task`).

Sources follow section 3.2 of the paper: labelers write prompts of three types
(plain: an arbitrary task; few-shot: an instruction with query/answer pairs;
user-based: a use case from the API waitlist) and customers write theirs,
phrased in their own ways. Categories follow Table 1. Customers have user ids
with a heavy-tailed number of prompts each; splits never share a user, as the
paper splits by user id.
"""

from __future__ import annotations

import random

from rlhf.world import language as L
from rlhf.world.knowledge import KnowledgeBase
from rlhf.world.responses import ideal_response
from rlhf.world.tasks import CATEGORY_SHARES, sample_task

LABELER_TYPES = ("plain", "few_shot", "user_based")
_CUSTOMER_WRAPS = ("{i}", "{i}", "{i}", "please {i}", "{i} thanks!", "can you help me? {i}", "hey. {i}",
                   "hi! {i}", "{i} please.", "quick question. {i}", "i need help. {i}", "{i} thank you.",
                   "hello. {i}", "ok. {i}", "one more thing. {i}", "{i} i need it for school.")
_USE_CASES = ("i run a {food} shop.", "i am a teacher.", "i write books for kids.", "i run a farm.",
              "i make a game about animals.", "i work at a zoo.", "i cook for my family.", "i study maps.")
# Users are numbered per split from disjoint ranges: no user is in two splits.
USER_BLOCKS = {"train": 0, "valid": 5000, "test": 8000}


def sample_category(rng: random.Random) -> str:
    names = list(CATEGORY_SHARES)
    return rng.choices(names, weights=[CATEGORY_SHARES[c] for c in names])[0]


def qa_pair(question: str, answer: str) -> str:
    """The question/answer page format of the pretraining text, used by few-shot prompts."""
    return f"question: {question} answer: {answer}"


def few_shot(kb: KnowledgeBase, instruction: str, examples: list[tuple[str, str]]) -> str:
    return " ".join(qa_pair(q, a) for q, a in examples) + f" question: {instruction} answer:"


def render(kb: KnowledgeBase, task: dict, source: str, prompt_type: str, rng: random.Random) -> str:
    i = task["instruction"]
    if source == "customer":
        return rng.choice(_CUSTOMER_WRAPS).format(i=i)
    if prompt_type == "few_shot":
        # Two worked examples of the same category, answered as a labeler would.
        shots = [sample_task(kb, task["category"], rng) for _ in range(2)]
        return few_shot(kb, i, [(s["instruction"], ideal_response(kb, s, rng)) for s in shots])
    if prompt_type == "user_based":
        return rng.choice(_USE_CASES).format(food=rng.choice(L.FOODS)) + " " + i
    return i


class UserPool:
    """Customers with a Zipf-like number of prompts each (a few heavy users),
    and the labelers who write prompts."""

    def __init__(self, rng: random.Random, split: str, labeler_ids: list[str], n_customers: int = 400):
        self.rng = rng
        base = USER_BLOCKS[split]
        self.customers = [f"u-{base + i:04d}" for i in range(n_customers)]
        self.weights = [1.0 / (i + 1) ** 0.8 for i in range(n_customers)]
        self.labeler_ids = labeler_ids

    def customer(self) -> str:
        return self.rng.choices(self.customers, weights=self.weights)[0]

    def labeler(self) -> str:
        return "u-" + self.rng.choice(self.labeler_ids)


def make_prompts(kb: KnowledgeBase, rng: random.Random, n: int, split: str, labeler_ids: list[str],
                 source: str | None = None, exclude: set[str] | None = None, id_prefix: str = "p") -> list[dict]:
    """`n` distinct prompt records. `source` None mixes labeler and customer
    prompts half and half; `exclude` holds prompt texts already used elsewhere."""
    users = UserPool(rng, split, labeler_ids)
    seen = set(exclude or ())
    out = []
    for _ in range(n):
        # The category is drawn first and kept through retries, so that dedup
        # cannot skew the shares of Table 1 towards categories with more variety.
        category = sample_category(rng)
        for _ in range(30):
            src = source or rng.choice(("labeler", "customer"))
            ptype = rng.choice(LABELER_TYPES) if src == "labeler" else "customer"
            task = sample_task(kb, category, rng)
            text = render(kb, task, src, ptype, rng)
            if text not in seen:
                break
        else:
            continue  # this category is exhausted; the paper deduplicates prompts
        seen.add(text)
        out.append({
            "id": f"{id_prefix}-{split}-{len(out):05d}", "prompt": text,
            "user_id": users.customer() if src == "customer" else users.labeler(),
            "source": src, "category": task["category"], "prompt_type": ptype, "task": task,
        })
    if len(out) < n:
        raise ValueError(f"only {len(out)} distinct prompts could be drawn for {split!r}; ask for fewer")
    return out
