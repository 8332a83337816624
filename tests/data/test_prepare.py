"""`rlhf data prepare`: each rule of the paper's section 3.2 on hand-written cases."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from rlhf.cli import main as rlhf_main
from rlhf.data.files import read_records
from rlhf.data.prepare import PrepareConfig, prepare, split_of
from rlhf.data.records import RecordError


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _prepare(tmp_path, records, **config):
    src = _write(tmp_path / "in.jsonl", records)
    out = tmp_path / "out"
    report = prepare(src, out, PrepareConfig(progress=False, **config))
    kept = {s: [json.loads(line) for line in (out / f"{s}.jsonl").read_text().splitlines()]
            for s in ("train", "valid", "test")}
    return report, kept, out


def _all(kept):
    return [r for split in kept.values() for r in split]


def test_prefix_duplicates_are_dropped_only_when_the_first_n_chars_match(tmp_path):
    base = "x" * 30 + " " + "x" * 29 + "abcd"  # 64 characters
    records = [
        {"id": "a", "prompt": base + " first ending"},
        {"id": "b", "prompt": base + " a different ending"},  # same 64 chars, differs after: dropped
        {"id": "c", "prompt": base.upper() + "   more"},  # same after lowercasing: dropped
        {"id": "d", "prompt": base[:63] + "E tail"},  # differs at character 64: kept
        {"id": "e", "prompt": "  " + "x" * 30 + "\n\n " + "x" * 29 + "abcd!"},  # whitespace runs collapse: dropped
        {"id": "f", "prompt": "short"},
        {"id": "g", "prompt": "short"},  # shorter than the limit and identical: dropped
        {"id": "h", "prompt": "shorter"},
    ]
    report, kept, _ = _prepare(tmp_path, records)
    assert sorted(r["id"] for r in _all(kept)) == ["a", "d", "f", "h"]
    assert report["input"] == 8 and report["dropped/prefix_duplicate"] == 4


def test_prefix_length_is_configurable(tmp_path):
    records = [{"prompt": "Write a poem about cats"}, {"prompt": "Write a poem about dogs"}]
    assert _prepare(tmp_path, records, prefix_chars=10)[0]["dropped/prefix_duplicate"] == 1
    assert _prepare(tmp_path, records, prefix_chars=64)[0]["dropped/prefix_duplicate"] == 0


def test_conversations_dedup_on_their_rendered_text(tmp_path):
    convo = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hello there"}]
    other = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "goodbye now"}]
    report, kept, _ = _prepare(tmp_path, [{"prompt": convo}, {"prompt": convo}, {"prompt": other}])
    assert report["dropped/prefix_duplicate"] == 1
    assert [r["prompt"] for r in _all(kept)].count(convo) == 1


def test_a_user_with_250_prompts_keeps_200(tmp_path):
    records = [{"id": f"heavy-{i}", "prompt": f"prompt number {i} from the heavy user", "user_id": "heavy"}
               for i in range(250)]
    records += [{"id": f"light-{i}", "prompt": f"light user prompt {i}", "user_id": "light"} for i in range(5)]
    # A duplicate does not use up the cap: it is dropped before the user is counted.
    records.insert(10, {"prompt": "prompt number 3 from the heavy user", "user_id": "heavy"})
    report, kept, _ = _prepare(tmp_path, records)
    heavy = [r["id"] for r in _all(kept) if r["user_id"] == "heavy"]
    assert sorted(heavy) == sorted(f"heavy-{i}" for i in range(200))  # the first 200, in input order
    assert sum(r["user_id"] == "light" for r in _all(kept)) == 5
    assert report["dropped/over_user_cap"] == 50 and report["dropped/prefix_duplicate"] == 1
    assert _prepare(tmp_path, records, max_per_user=0)[0]["dropped/over_user_cap"] == 0


def test_prompts_over_the_length_cap_are_dropped_before_masking_and_counted(tmp_path):
    convo = [{"role": "system", "content": "x" * 6}, {"role": "user", "content": "y" * 5}]  # 11 characters in all
    records = [{"id": "short", "prompt": "a" * 10}, {"id": "long", "prompt": "mail a@b.com " + "b" * 10},
               {"id": "convo", "prompt": convo}]
    report, kept, out = _prepare(tmp_path, records, max_prompt_chars=10)
    assert [r["id"] for r in _all(kept)] == ["short"]
    assert report["dropped/too_long"] == 2 and report["pii/email"] == 0  # never masked, so never counted
    assert "2 longer than 10 characters" in (out / "stats.md").read_text()
    report, kept, _ = _prepare(tmp_path, records, max_prompt_chars=11)
    assert sorted(r["id"] for r in _all(kept)) == ["convo", "short"]
    report, kept, _ = _prepare(tmp_path, records, max_prompt_chars=0)  # no cap
    assert len(_all(kept)) == 3 and report["dropped/too_long"] == 0
    assert PrepareConfig().max_prompt_chars == 32_768
    with pytest.raises(ValueError, match="max_prompt_chars"):
        _prepare(tmp_path, records, max_prompt_chars=-1)


def test_users_never_cross_splits_and_shares_follow_the_fractions(tmp_path):
    records = [{"id": f"{u}-{i}", "prompt": f"user {u} asks question {i}", "user_id": f"u{u}"}
               for u in range(600) for i in range(3)]
    report, kept, _ = _prepare(tmp_path, records, fractions=(0.6, 0.2, 0.2))
    splits_of_user = defaultdict(set)
    for split, rows in kept.items():
        for r in rows:
            splits_of_user[r["user_id"]].add(split)
    assert len(splits_of_user) == 600
    assert all(len(s) == 1 for s in splits_of_user.values())
    users = {s: sum(1 for v in splits_of_user.values() if v == {s}) for s in ("train", "valid", "test")}
    assert 300 < users["train"] < 420 and 80 < users["valid"] < 160 and 80 < users["test"] < 160
    assert users == {s: report[f"users/{s}"] for s in users}
    assert report["split/train"] == 3 * users["train"]


def test_the_split_is_deterministic_and_the_seed_reshuffles_it():
    users = [f"user-{i}" for i in range(200)]
    first = [split_of(u, (0.8, 0.1, 0.1), seed=0) for u in users]
    assert first == [split_of(u, (0.8, 0.1, 0.1), seed=0) for u in users]
    assert first != [split_of(u, (0.8, 0.1, 0.1), seed=1) for u in users]
    assert {split_of(u, (1.0, 0.0, 0.0), seed=3) for u in users} == {"train"}


def test_output_is_scrubbed_prompt_records_with_report_and_tables(tmp_path):
    records = [
        {"id": "p1", "prompt": "Summarize this email from bob@example.com", "user_id": "u1", "source": "customer",
         "secret": "not scrubbed, so not written"},
        {"id": "p2", "prompt": "Write a poem for Emily Clark", "user_id": "u2", "source": "customer",
         "category": "generation"},
        {"id": "p3", "prompt": "What is the capital of France?", "user_id": "u3", "source": "labeler"},
    ]
    report, kept, out = _prepare(tmp_path, records, tag_categories=True, fractions=(1.0, 0.0, 0.0))
    rows = {r["id"]: r for r in read_records(out / "train.jsonl", "prompt")}  # readable as formats.md prompts
    assert rows["p1"] == {"id": "p1", "prompt": "Summarize this email from [EMAIL]", "user_id": "u1",
                          "source": "customer", "category": "summarization"}
    assert rows["p2"]["prompt"] == "Write a poem for [NAME]" and rows["p2"]["category"] == "generation"
    assert rows["p3"]["category"] == "open_qa"
    assert json.loads((out / "report.json").read_text()) == report
    assert report["pii/email"] == 1 and report["pii/name"] == 1 and report["pii/card"] == 0
    assert {k for k in report if k.startswith(("input", "dropped/", "pii/", "split/"))} >= {
        "input", "dropped/prefix_duplicate", "dropped/over_user_cap", "pii/email", "pii/phone", "pii/card",
        "pii/address", "pii/ip", "pii/name", "split/train", "split/valid", "split/test"}
    stats = (out / "stats.md").read_text()
    assert "Table 1" in stats and "| summarization | 1 | 33.3% |" in stats
    assert "Table 6" in stats and "| train | customer | 2 |" in stats and "| train | labeler | 1 |" in stats


def test_no_pii_flag_and_untagged_categories(tmp_path):
    report, kept, out = _prepare(tmp_path, [{"prompt": "mail a@b.com"}], scrub_pii=False)
    assert _all(kept)[0]["prompt"] == "mail a@b.com" and "category" not in _all(kept)[0]
    assert report["pii/email"] == 0
    assert "| untagged | 1 | 100.0% |" in (out / "stats.md").read_text()


def test_a_bad_record_names_file_line_and_field_and_writes_nothing(tmp_path):
    records = [{"prompt": "fine"}, {"prompt": "ok", "category": "poetry"}]
    with pytest.raises(RecordError, match=r"in.jsonl:2: field 'category'"):
        _prepare(tmp_path, records)
    assert not (tmp_path / "out" / "train.jsonl").exists()
    assert list((tmp_path / "out").iterdir()) == []  # no temporary files left behind
    report, kept, _ = _prepare(tmp_path, records, skip_bad_records=True)
    assert report["skipped/bad_record"] == 1 and len(_all(kept)) == 1


def test_cli_prepares_and_reports_errors(tmp_path, capsys):
    src = _write(tmp_path / "in.jsonl", [{"prompt": f"prompt {i}", "user_id": "u"} for i in (1, 2, 3, 10, 4)])
    code = rlhf_main(["data", "prepare", "--in", str(src), "--out", str(tmp_path / "out"), "--max-per-user", "3",
                      "--prefix-chars", "8", "--no-progress", "--max-prompt-chars", "8"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dropped/over_user_cap"] == 1 and report["input"] == 5
    assert report["dropped/too_long"] == 1  # "prompt 10"
    bad = _write(tmp_path / "bad.jsonl", [{"prompt": 3}])
    assert rlhf_main(["data", "prepare", "--in", str(bad), "--out", str(tmp_path / "o2")]) == 2
    assert "bad.jsonl:1: field 'prompt'" in capsys.readouterr().err
    assert rlhf_main(["data", "prepare", "--in", str(src), "--out", str(tmp_path / "o3"), "--split", "0.5,0.1,0.1"]) == 2
    assert "fractions" in capsys.readouterr().err
