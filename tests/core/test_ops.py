"""The shared padding helper and JSON-lines writers, by hand."""

import json

import torch

from rlhf.core.io import append_jsonl, atomic_write_jsonl
from rlhf.core.ops import pad_rows


def test_pad_rows_right_and_left():
    ids, mask = pad_rows([[5, 6], [7], [8, 9, 4]], pad_id=0)
    assert ids.tolist() == [[5, 6, 0], [7, 0, 0], [8, 9, 4]]
    assert mask.tolist() == [[1, 1, 0], [1, 0, 0], [1, 1, 1]]
    ids, mask = pad_rows([[5, 6], [7], [8, 9, 4]], pad_id=0, left=True)
    assert ids.tolist() == [[0, 5, 6], [0, 0, 7], [8, 9, 4]]
    assert mask.tolist() == [[0, 1, 1], [0, 0, 1], [1, 1, 1]]
    assert ids.dtype == mask.dtype == torch.long


def test_jsonl_replace_and_append(tmp_path):
    path = tmp_path / "log.jsonl"
    assert atomic_write_jsonl(path, ({"step": s} for s in (1, 2))) == 2
    append_jsonl(path, [{"step": 3, "text": "é"}])
    assert [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] == [
        {"step": 1}, {"step": 2}, {"step": 3, "text": "é"}]
    atomic_write_jsonl(path, [])
    assert path.read_text() == "" and not list(tmp_path.glob(".*.tmp"))
