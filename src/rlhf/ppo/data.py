"""PPO's inputs: prompts for episodes and pretraining text for the ptx term, tokenised once.

Which prompts make iteration i and which pretraining sequences make optimizer step k
are functions of the seed and the counter only, so every process and a resumed run
agree without saving any order."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import torch

from rlhf.core.tokens import encode_prompt, fit_prompt
from rlhf.core.train import epoch_order
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


def sequence_item(num_items: int, seed: int, n: int) -> int:
    """The n-th item of an endless stream of seeded shuffles of range(num_items)."""
    epoch, pos = divmod(n, num_items)
    return _order(num_items, seed, epoch)[pos]


@functools.lru_cache(maxsize=4)
def _order(num_items: int, seed: int, epoch: int) -> tuple[int, ...]:
    return tuple(epoch_order(num_items, seed, epoch))


def load_pretrain(path: str, tokenizer, max_length: int, skip_bad_records: bool = False) -> list[list[int]]:
    """Pretraining documents (formats: pretraining text) as token ids with EOS, cut to max_length."""
    records = read_records(path, "pretrain", skip_bad_records=skip_bad_records)
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    docs = [(tokenizer(r["text"], add_special_tokens=True)["input_ids"] + eos)[:max_length] for r in records]
    docs = [d for d in docs if len(d) >= 2]  # one token has no next-token target
    if not docs:
        raise ValueError(f"{path}: no pretraining document has two or more tokens")
    return docs


def collate_text(docs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (b, L) ids and attention mask."""
    L = max((len(d) for d in docs), default=1)
    ids = torch.full((len(docs), L), pad_id, dtype=torch.long)  # (b, L)
    mask = torch.zeros((len(docs), L), dtype=torch.long)  # (b, L)
    for i, d in enumerate(docs):
        ids[i, : len(d)] = torch.tensor(d)
        mask[i, : len(d)] = 1
    return ids.to(device), mask.to(device)
