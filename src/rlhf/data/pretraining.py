"""Pretraining text (formats: pretraining text) as token ids: PPO-ptx trains on it, eval
measures perplexity on it."""

from __future__ import annotations

import torch

from rlhf.data.io import read_records


def load_pretrain(path: str, tokenizer, max_length: int, skip_bad_records: bool = False) -> list[list[int]]:
    """Pretraining documents as token ids with EOS, cut to max_length."""
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
