"""Demonstrations -> token rows, padded or packed.

A row's `select` marks positions t whose next token t+1 is a response token
(the loss is on response tokens only), and `targets[t]` is that next token.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from rlhf.core.ops import pad_rows
from rlhf.core.run import progress_iter
from rlhf.core.tokens import TruncationCounter, encode_pair
from rlhf.data import read_records


@dataclass
class Example:
    prompt_ids: list[int]
    response_ids: list[int]

    @property
    def ids(self) -> list[int]:
        return self.prompt_ids + self.response_ids

    def __len__(self) -> int:
        return len(self.prompt_ids) + len(self.response_ids)


def load_examples(path: str, tokenizer, max_length: int, skip_bad_records: bool) -> list[Example]:
    records = read_records(path, "demonstration", skip_bad_records=skip_bad_records)
    counter = TruncationCounter(path)
    examples = []
    for r in progress_iter(records, f"tokenizing {Path(path).name}"):
        pair = encode_pair(tokenizer, r["prompt"], r["response"], max_length, counter)
        if pair is not None:
            examples.append(Example(*pair))
    counter.report()
    if not examples:
        raise ValueError(f"{path}: no demonstration fits max_length={max_length}")
    return examples


def collate_padded(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded rows, as long as the longest example of the micro-batch."""
    input_ids, attention_mask = pad_rows([e.ids for e in examples], pad_id)  # (B, T)
    select = torch.zeros(input_ids.shape, dtype=torch.bool)  # (B, T)
    for b, e in enumerate(examples):
        select[b, len(e.prompt_ids) - 1 : len(e) - 1] = True  # position t predicts token t+1 of the response
    targets = torch.roll(input_ids, -1, dims=1)  # (B, T): next token
    return {"input_ids": input_ids, "attention_mask": attention_mask, "select": select, "targets": targets[select]}


def pack_rows(examples: list[Example], max_length: int) -> list[list[Example]]:
    """Greedy first-fit of examples (in the given order) into rows of max_length tokens."""
    rows: list[list[Example]] = []
    space: list[int] = []
    for e in examples:
        for i, free in enumerate(space):
            if len(e) <= free:
                rows[i].append(e)
                space[i] -= len(e)
                break
        else:
            rows.append([e])
            space.append(max_length - len(e))
    return rows


def collate_packed(examples: list[Example], pad_id: int, max_length: int) -> dict[str, torch.Tensor]:
    """Examples packed into rows; each attends only to itself and its positions restart at 0."""
    rows = pack_rows(examples, max_length)
    T = max(sum(len(e) for e in row) for row in rows)
    B = len(rows)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)  # (B, T)
    position_ids = torch.zeros((B, T), dtype=torch.long)  # (B, T)
    segment = torch.full((B, T), -1, dtype=torch.long)  # (B, T): example index in the row, -1 for padding
    select = torch.zeros((B, T), dtype=torch.bool)  # (B, T)
    for b, row in enumerate(rows):
        start = 0
        for s, e in enumerate(row):
            n, p = len(e), len(e.prompt_ids)
            input_ids[b, start : start + n] = torch.tensor(e.ids)
            position_ids[b, start : start + n] = torch.arange(n)
            segment[b, start : start + n] = s
            select[b, start + p - 1 : start + n - 1] = True
            start += n
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))  # (T, T)
    same = segment[:, :, None] == segment[:, None, :]  # (B, T, T)
    real = (segment >= 0)[:, :, None]
    # Padding rows attend to themselves only, so no softmax row is empty (NaN-free).
    eye = torch.eye(T, dtype=torch.bool)[None]
    attention_mask = ((same & real & causal) | eye)[:, None]  # (B, 1, T, T)
    targets = torch.roll(input_ids, -1, dims=1)
    return {
        "input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
        "select": select, "targets": targets[select],
    }
