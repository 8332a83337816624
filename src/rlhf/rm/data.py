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

from rlhf.core.groups import padded_groups
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


@dataclass
class RankingBatch:
    """A micro-batch of whole prompts: each response one row (N in all), and the pairs between rows."""

    groups: list[tuple[torch.Tensor, torch.Tensor]]  # rows right-padded in length groups: (ids, mask), (b, T_g) each
    row_position: torch.Tensor  # (N,) where row n's score is among the groups' scores concatenated
    pairs: torch.Tensor  # (P, 2) flat row indices (better, worse)
    pair_prompt: torch.Tensor  # (P,) the prompt of the batch each pair belongs to

    def to(self, device) -> "RankingBatch":
        return RankingBatch([(ids.to(device), mask.to(device)) for ids, mask in self.groups],
                            self.row_position.to(device), self.pairs.to(device), self.pair_prompt.to(device))


def collate_rankings(rankings: list[Ranking], pad_id: int, group_cost: float | None = None) -> RankingBatch:
    """Every response of the batch's prompts as a row, pairs offset into the flat row index. With `group_cost`,
    rows of similar length are padded in groups of their own (`core/groups.padded_groups`): less padding, the
    same scores; without, one group."""
    rows = [r for ranking in rankings for r in ranking.rows]
    groups, row_position = padded_groups(rows, pad_id, group_cost)
    pairs, pair_prompt, offset = [], [], 0
    for p, ranking in enumerate(rankings):
        pairs += [(offset + w, offset + l) for w, l in ranking.pairs]
        pair_prompt += [p] * len(ranking.pairs)
        offset += len(ranking.rows)
    return RankingBatch(groups, row_position, torch.tensor(pairs, dtype=torch.long).view(-1, 2),  # (P, 2)
                        torch.tensor(pair_prompt, dtype=torch.long))  # (P,)
