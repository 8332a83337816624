"""Pretraining text (formats: pretraining text) as token ids: PPO-ptx trains on it, eval
measures perplexity on it."""

from __future__ import annotations

from rlhf.data.files import read_records


def load_pretrain(path: str, tokenizer, max_length: int, skip_bad_records: bool = False) -> list[list[int]]:
    """Pretraining documents as token ids with EOS, cut to max_length."""
    records = read_records(path, "pretrain", skip_bad_records=skip_bad_records)
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    docs = [(tokenizer(r["text"], add_special_tokens=True)["input_ids"] + eos)[:max_length] for r in records]
    docs = [d for d in docs if len(d) >= 2]  # one token has no next-token target
    if not docs:
        raise ValueError(f"{path}: no pretraining document has two or more tokens")
    return docs

