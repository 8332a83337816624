"""Readers for every record type: JSONL, JSON, Parquet, datasets folders; errors name file, line, field."""

import json

import pytest

from rlhf.data import RecordError, read_records, write_records
from rlhf.data.files import iter_records


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_comparison_with_flat_and_grouped_rankings(tmp_path):
    f = write(tmp_path / "c.jsonl", [
        {"prompt": "q", "responses": ["a", "b", "c"], "ranking": [2, 0, 1], "likert": [5, 3, 7], "extra": 1},
        {"prompt": "q", "responses": ["a", "b", "c", "d"], "ranking": [[2], [0, 3], [1]]},
    ])
    recs = read_records(f, "comparison")
    assert recs[0]["ranking"] == [[2], [0], [1]]
    assert recs[0]["extra"] == 1  # unknown fields are kept
    assert recs[1]["ranking"] == [[2], [0, 3], [1]]


def test_error_names_file_line_and_field(tmp_path):
    f = write(tmp_path / "c.jsonl", [
        {"prompt": "q", "responses": ["a", "b"], "ranking": [0, 1]},
        "",
        {"prompt": "q", "responses": ["a", "b"], "ranking": [0, 1], "likert": [3, 9]},
    ])
    with pytest.raises(RecordError) as e:
        read_records(f, "comparison")
    assert e.value.line == 3 and e.value.field == "likert[1]"
    assert str(e.value).startswith(f"{f}:3: field 'likert[1]'")


def test_bad_json_and_skip_bad_records_counts(tmp_path):
    f = write(tmp_path / "d.jsonl", [
        {"prompt": "q", "response": "a"}, "{not json", {"prompt": "q"}, {"prompt": "", "response": "x"},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
    ])
    with pytest.raises(RecordError, match=r":2: field '<json>'"):
        read_records(f, "demonstration")
    stats = {}
    recs = read_records(f, "demonstration", skip_bad_records=True, stats=stats)
    assert stats == {"read": 2, "skipped": 3}
    assert recs[1]["prompt"] == [{"role": "user", "content": "hi"}] and recs[1]["response"] == "hello"


def test_k_below_two_and_missing_prompt(tmp_path):
    f = write(tmp_path / "c.jsonl", [{"prompt": "q", "responses": ["a"], "ranking": [0]}])
    with pytest.raises(RecordError, match="K >= 2"):
        read_records(f, "comparison")
    f = write(tmp_path / "c2.jsonl", [{"responses": ["a", "b"], "ranking": [0, 1]}])
    with pytest.raises(RecordError, match="field 'prompt': is required"):
        read_records(f, "comparison")


def test_public_pairwise_with_prompt_is_k2(tmp_path):
    f = write(tmp_path / "p.jsonl", [{"prompt": "Q?", "chosen": "good", "rejected": "bad"}])
    (rec,) = read_records(f, "comparison")
    assert rec["responses"] == ["good", "bad"] and rec["ranking"] == [[0], [1]] and rec["prompt"] == "Q?"


def test_public_pairwise_without_prompt_splits_at_turn_boundary(tmp_path):
    f = write(tmp_path / "hh.jsonl", [
        {"chosen": "\n\nHuman: How are you?\n\nAssistant: Fine, thanks.",
         "rejected": "\n\nHuman: How are you?\n\nAssistant: Fuzzy."},
        {"chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello!"}],
         "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "go away"}]},
    ])
    text, conv = read_records(f, "comparison")
    # The common prefix "...Assistant: F" is cut back to the end of the "Assistant:" marker.
    assert text["prompt"] == "\n\nHuman: How are you?\n\nAssistant:"
    assert text["responses"] == [" Fine, thanks.", " Fuzzy."]
    assert conv["prompt"] == [{"role": "user", "content": "hi"}]
    assert conv["responses"] == ["hello!", "go away"]


def test_parquet_and_json_and_txt_and_datasets_folder(tmp_path):
    rows = [{"prompt": f"q{i}", "response": f"a{i}"} for i in range(5)]
    write_records(tmp_path / "d.parquet", rows)
    assert [r["prompt"] for r in read_records(tmp_path / "d.parquet", "demonstration")] == [f"q{i}" for i in range(5)]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    assert len(read_records(tmp_path / "d.json", "demonstration")) == 5
    (tmp_path / "p.txt").write_text("one doc\n\ntwo doc\n")
    assert [r["text"] for r in read_records(tmp_path / "p.txt", "pretrain")] == ["one doc", "two doc"]
    import datasets

    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    assert len(read_records(tmp_path / "ds", "demonstration")) == 5


def test_parquet_error_names_the_row(tmp_path):
    write_records(tmp_path / "bad.parquet", [{"prompt": "q", "response": "a"}, {"prompt": "q", "response": None}])
    with pytest.raises(RecordError, match=r"bad.parquet:2: field 'response'"):
        read_records(tmp_path / "bad.parquet", "demonstration")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(iter_records(tmp_path / "nope.jsonl", "prompt"))


def test_prompts_validate_category_and_source(tmp_path):
    f = write(tmp_path / "p.jsonl", [{"prompt": "x", "category": "poetry"}])
    with pytest.raises(RecordError, match="category"):
        read_records(f, "prompt")
    f = write(tmp_path / "p2.jsonl", [{"prompt": [{"role": "user", "content": "hi"}], "source": "customer"}])
    assert read_records(f, "prompt")[0]["source"] == "customer"


def test_flags_must_be_known_booleans(tmp_path):
    f = write(tmp_path / "c.jsonl", [{"prompt": "q", "responses": ["a", "b"], "ranking": [0, 1],
                                      "flags": [{"hallucination": True}, {"halucination": False}]}])
    with pytest.raises(RecordError, match=r"flags\[1\].halucination"):
        read_records(f, "comparison")


def test_shipped_sample_data_is_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "data" / "sample"
    kinds = {"prompts": "prompt", "demonstrations_train": "demonstration", "comparisons_train": "comparison",
             "pairwise": "comparison", "pretrain": "pretrain", "samples": "sample"}
    for name, kind in kinds.items():
        assert len(read_records(root / f"{name}.jsonl", kind)) >= 100
