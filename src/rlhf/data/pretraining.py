"""Pretraining text (formats: pretraining text) as token ids: PPO-ptx and SFT's pretraining mix
train on it, eval measures perplexity on it."""

from __future__ import annotations

from rlhf.core.train import sequence_item
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


def step_documents(docs: list[list[int]], batch_size: int, seed: int, step: int, rank: int = 0,
                   nproc: int = 1) -> tuple[list[list[int]], int]:
    """This process's share of the `batch_size` pretraining documents of optimizer step `step`, and the
    target-token count (all tokens but each document's first) of the whole global batch. The documents come
    from an endless stream of seeded shuffles, a function of (seed, step) only, so every process and a
    resumed run agree on them."""
    start = step * batch_size
    batch = [docs[sequence_item(len(docs), seed, n)] for n in range(start, start + batch_size)]
    per_proc = len(batch) // nproc
    return batch[rank * per_proc : (rank + 1) * per_proc], sum(len(d) - 1 for d in batch)
