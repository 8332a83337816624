"""Rankings -> token rows, one row per response, and the pairs between them.

A batch holds whole prompts: the K responses of a prompt are K rows, each
forwarded once, and the C(K,2) pairs index into those rows. K may differ
between the prompts of one batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from rlhf.core.groups import length_groups
from rlhf.core.ops import pad_rows
from rlhf.core.run import progress_iter
from rlhf.core.tokens import TruncationCounter, encode_pair
from rlhf.data import read_records
from rlhf.data.rankings import ranking_pairs

log = logging.getLogger(__name__)


@dataclass
class Ranking:
    rows: list[list[int]]  # K token rows: prompt + response (+ EOS)
    pairs: list[tuple[int, int]]  # (better, worse) indices into rows


def encode_ranking(record: dict, tokenizer, max_length: int, counter: TruncationCounter) -> Ranking | None:
    rows = []
    for response in record["responses"]:
        pair = encode_pair(tokenizer, record["prompt"], response, max_length, counter)
        if pair is None:
            return None  # one response too long drops the whole ranking: its pairs would be incomplete
        rows.append(pair[0] + pair[1])
    return Ranking(rows, ranking_pairs(record["ranking"]))


def load_rankings(path: str, tokenizer, max_length: int, skip_bad_records: bool) -> list[Ranking]:
    records = read_records(path, "comparison", skip_bad_records=skip_bad_records)
    counter = TruncationCounter(path)
    rankings, all_tied = [], 0
    for record in progress_iter(records, f"tokenizing {Path(path).name}"):
        ranking = encode_ranking(record, tokenizer, max_length, counter)
        if ranking is None:
            continue
        if not ranking.pairs:
            all_tied += 1
            continue
        rankings.append(ranking)
    counter.report()
    if all_tied:
        log.warning("%s: %d ranking(s) tie every response and give no pair; skipped", path, all_tied)
    if not rankings:
        raise ValueError(f"{path}: no ranking fits max_length={max_length} with at least one pair")
    return rankings


def collate_rankings(rankings: list[Ranking], pad_id: int, group_cost: float | None = None) -> dict[str, torch.Tensor]:
    """Rows of all prompts right-padded together; pairs offset into the flat row index. With `group_cost`,
    `row_group` numbers groups of rows of similar length for the model to forward apart (less padding)."""
    rows = [r for ranking in rankings for r in ranking.rows]
    N = len(rows)
    input_ids, attention_mask = pad_rows(rows, pad_id)  # (N, T)
    pairs, pair_prompt, offset = [], [], 0
    for p, ranking in enumerate(rankings):
        pairs += [(offset + w, offset + l) for w, l in ranking.pairs]
        pair_prompt += [p] * len(ranking.pairs)
        offset += len(ranking.rows)
    row_group = torch.zeros(N, dtype=torch.long)  # (N,)
    if group_cost is not None:
        for g, members in enumerate(length_groups([len(r) for r in rows], [0] * N, N, group_cost)):
            row_group[members] = g
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "pairs": torch.tensor(pairs, dtype=torch.long).view(-1, 2),  # (P, 2)
        "pair_prompt": torch.tensor(pair_prompt, dtype=torch.long),  # (P,)
        "row_group": row_group,
    }
