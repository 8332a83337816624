"""PPO's prompts, tokenised once, and the seeded streams that pick them.

Which prompts make iteration i and which pretraining sequences (`data/pretraining.py`)
make optimizer step k are functions of the seed and the counter only, so every process
and a resumed run agree without saving any order."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rlhf.core.tokens import encode_prompt, fit_prompt
from rlhf.core.train import sequence_item
from rlhf.data import read_records

log = logging.getLogger("rlhf.ppo")


@dataclass
class Prompts:
    records: list[dict]  # formats: prompts
    ids: list[list[int]]  # token ids, cut from the left to the prompt budget


def load_prompts(path: str, tokenizer, budget: int, skip_bad_records: bool = False) -> Prompts:
    records = read_records(path, "prompt", skip_bad_records=skip_bad_records)
    ids, cut = [], 0
    for r in records:
        full = encode_prompt(tokenizer, r["prompt"])
        fitted = fit_prompt(full, budget, tokenizer.bos_token_id)
        cut += len(fitted) < len(full)
        ids.append(fitted)
    if cut:
        log.info("%s: %d prompt(s) cut from the left to %d tokens (max_length - max_new_tokens)", path, cut, budget)
    return Prompts(records, ids)


def batch_prompt_indices(num_prompts: int, batch_size: int, seed: int, iteration: int) -> list[int]:
    """The prompts of PPO iteration `iteration` (global batch), cycling through seeded epochs."""
    start = iteration * batch_size
    return [sequence_item(num_prompts, seed, n) for n in range(start, start + batch_size)]
