"""`rlhf label` import/export/stats/users: all-or-nothing imports with line numbers,
exports in formats.md that the shared readers load, exclusion and hold-out."""

from __future__ import annotations

import json

import pytest
from tests.label.conftest import PASSWORD, add_user
from tests.label.label_helpers import write_jsonl
from sqlalchemy import func, select

from rlhf.data import read_records
from rlhf.label import tasks
from rlhf.label.auth import CurrentUser
from rlhf.label.cli import main
from rlhf.label.db import Database
from rlhf.label.models import Item, User


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def items(url: str) -> int:
    db = Database(url)
    with db.transaction() as s:
        n = s.scalar(select(func.count()).select_from(Item))
    db.dispose()
    return n


def sample(pid: str, j: int, prompt: str | None = None) -> dict:
    return {"prompt_id": pid, "prompt": prompt or f"prompt {pid}", "model": f"m{j}", "response": f"r{j} of {pid}"}


def test_import_prompts_is_all_or_nothing_and_names_the_line(sqlite_url, tmp_path, capsys):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "good"}, "", {"prompt": "good too"}, "{not json", {"prompt": "x"}])
    code, _, err = run(capsys, "import-prompts", str(path), "--db", sqlite_url)
    assert code == 2 and "p.jsonl:4" in err and "not valid JSON" in err
    assert items(sqlite_url) == 0
    path = write_jsonl(tmp_path / "q.jsonl", [{"prompt": "good"}, {"id": "p-2"}])
    code, _, err = run(capsys, "import-prompts", str(path), "--db", sqlite_url)
    assert code == 2 and "q.jsonl:2: field 'prompt': is required" in err
    assert items(sqlite_url) == 0
    code, out, _ = run(capsys, "import-prompts", str(path), "--db", sqlite_url, "--skip-bad-records")
    assert code == 0 and "added 1 task(s), skipped 1 bad record(s)" in out
    code, out, _ = run(capsys, "import-prompts", str(path), "--db", sqlite_url, "--skip-bad-records")
    assert "added 0 task(s), 1 already present" in out and items(sqlite_url) == 1


def test_import_errors_for_missing_and_empty_files(sqlite_url, tmp_path, capsys):
    code, _, err = run(capsys, "import-prompts", str(tmp_path / "nope.jsonl"), "--db", sqlite_url)
    assert code == 2 and "nope.jsonl" in err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    code, _, err = run(capsys, "import-prompts", str(empty), "--db", sqlite_url)
    assert code == 2 and "holds no records" in err


def test_import_samples_groups_by_prompt_into_tasks_of_k(sqlite_url, tmp_path, capsys):
    records = [sample("a", j) for j in range(4)] + [sample("b", j) for j in range(8)]
    records.insert(2, sample("c", 0) | {"prompt_id": None, "prompt": "no id"})
    records.insert(5, sample("c", 1) | {"prompt_id": None, "prompt": "no id"})
    path = write_jsonl(tmp_path / "s.jsonl", records)
    code, out, _ = run(capsys, "import-samples", str(path), "--k", "4", "--db", sqlite_url)
    assert code == 2  # "no id" has 2 responses: not a multiple of 4
    code, out, _ = run(capsys, "import-samples", str(path), "--k", "2", "--db", sqlite_url)
    assert code == 0 and "added 7 task(s)" in out
    db = Database(sqlite_url)
    with db.transaction() as s:
        rows = s.execute(select(Item.prompt_id, Item.responses, Item.models).order_by(Item.id)).all()
    assert rows[0] == ("a", ["r0 of a", "r1 of a"], ["m0", "m1"])
    assert rows[2] == (None, ["r0 of c", "r1 of c"], ["m0", "m1"])
    assert rows[3][1] == ["r0 of b", "r1 of b"]
    db.dispose()


def test_import_samples_refuses_k_below_two_and_short_groups_with_the_line(sqlite_url, tmp_path, capsys):
    path = write_jsonl(tmp_path / "s.jsonl", [sample("a", j) for j in range(4)] + [sample("lonely", 0)])
    code, _, err = run(capsys, "import-samples", str(path), "--k", "1", "--db", sqlite_url)
    assert code == 2 and "K >= 2" in err
    code, _, err = run(capsys, "import-samples", str(path), "--k", "4", "--db", sqlite_url)
    assert code == 2 and "s.jsonl:5" in err and "1 response(s)" in err
    assert items(sqlite_url) == 0
    code, out, _ = run(capsys, "import-samples", str(path), "--k", "4", "--skip-bad-records", "--db", sqlite_url)
    assert code == 0 and "added 1 task(s), skipped 1 bad record(s)" in out


def test_import_samples_refuses_one_prompt_id_with_two_prompts(sqlite_url, tmp_path, capsys):
    path = write_jsonl(tmp_path / "s.jsonl", [sample("a", 0), sample("a", 1, prompt="something else")])
    code, _, err = run(capsys, "import-samples", str(path), "--k", "2", "--db", sqlite_url)
    assert code == 2 and "s.jsonl:2: field 'prompt'" in err and "line 1" in err


def test_import_screening_refuses_a_bad_reference_ranking(sqlite_url, tmp_path, capsys):
    path = write_jsonl(tmp_path / "s.jsonl", [{"prompt": "p", "responses": ["a", "b"], "ranking": [0, 0]}])
    code, _, err = run(capsys, "import-screening", str(path), "--task", "ranking", "--db", sqlite_url)
    assert code == 2 and "s.jsonl:1: field 'ranking'" in err
    path = write_jsonl(tmp_path / "k.jsonl", [{"prompt": "p", "responses": ["a"], "ranking": [0]}])
    code, _, err = run(capsys, "import-screening", str(path), "--task", "ranking", "--db", sqlite_url)
    assert code == 2 and "K >= 2" in err


def answer_all(db: Database, name: str, order_of) -> None:
    with db.transaction() as s:
        u = s.scalar(select(User).where(User.username == name))
        user = CurrentUser(u.id, u.username, u.role, u.status)
    while (aid := tasks.next_assignment(db, user)) is not None:
        view = tasks.load_task(db, aid, user)
        if view.kind == "demonstration":
            answer = tasks.ParsedAnswer(response=f"{name} says hi")
        else:
            k = len(view.responses)
            answer = tasks.ParsedAnswer(ranking=order_of(k), likert=[4] * k, flags=[{"violent": False}] * k)
        tasks.submit(db, aid, user, tasks.new_form_token(), answer)


def test_export_with_exclude_and_holdout_loads_with_the_shared_readers(sqlite_url, tmp_path, capsys):
    samples = write_jsonl(tmp_path / "s.jsonl", [sample(p, j) for p in "xyz" for j in range(3)])
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": "q1", "prompt": "Tell me a joke", "category": "generation"}])
    assert run(capsys, "import-samples", str(samples), "--k", "3", "--overlap", "3", "--db", sqlite_url)[0] == 0
    assert run(capsys, "import-prompts", str(prompts), "--overlap", "3", "--db", sqlite_url)[0] == 0
    db = Database(sqlite_url)
    for name in ("L1", "L2", "L3"):
        add_user(db, name)
    answer_all(db, "L1", lambda k: [[2], [0, 1]])
    answer_all(db, "L2", lambda k: [[2], [0], [1]])
    answer_all(db, "L3", lambda k: [[0], [1], [2]])
    db.dispose()
    out = tmp_path / "comparisons.jsonl"
    code, text, _ = run(capsys, "export", "--kind", "comparisons", "--out", str(out), "--exclude", "L3",
                        "--holdout", "L2", "--db", sqlite_url)
    assert code == 0 and "wrote 3 comparisons" in text and "wrote 3 held-out" in text
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    held = [json.loads(line) for line in (tmp_path / "comparisons.holdout.jsonl").read_text().splitlines()]
    assert {r["labeler_id"] for r in kept} == {"L1"} and {r["labeler_id"] for r in held} == {"L2"}
    assert kept[0]["ranking"] == [[2], [0, 1]] and held[0]["ranking"] == [2, 0, 1]  # groups only with ties
    assert kept[0]["prompt_id"] == "x" and kept[0]["responses"] == ["r0 of x", "r1 of x", "r2 of x"]
    assert len(kept[0]["flags"]) == 3 and kept[0]["likert"] == [4, 4, 4]
    loaded = read_records(out, "comparison")
    assert loaded[0]["ranking"] == [[2], [0, 1]] and loaded[0]["shown_order"] == kept[0]["shown_order"]
    demos = tmp_path / "demos.jsonl"
    assert run(capsys, "export", "--kind", "demonstrations", "--out", str(demos), "--db", sqlite_url)[0] == 0
    loaded = read_records(demos, "demonstration")
    assert [r["labeler_id"] for r in loaded] == ["L1", "L2", "L3"]
    assert loaded[0] | {"labeler_id": "L1"} == {"prompt": "Tell me a joke", "response": "L1 says hi", "labeler_id": "L1",
                                                "prompt_id": "q1", "category": "generation"}
    code, text, _ = run(capsys, "stats", "--db", sqlite_url)
    # per item: L1-L2 2/2 (L1 tied 0,1), L1-L3 0/2, L2-L3 1/3 -> 3 of 7 pairs, times 3 items
    assert code == 0 and "inter-labeler agreement: 42.9% over 21 response pairs" in text
    code, text, _ = run(capsys, "stats", "--json", "--db", sqlite_url)
    stats = json.loads(text)
    assert stats["progress"]["ranking"] == {"items": 3, "done": 3, "answers": 9}
    assert stats["throughput"]["L1"]["answers"] == 4


def test_user_commands(sqlite_url, capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    assert run(capsys, "create-user", "zed", "--password-stdin", "--db", sqlite_url)[1].strip() == "created labeler zed (candidate)"
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    code, _, err = run(capsys, "add-admin", "root", "--password-stdin", "--db", sqlite_url)
    assert code == 2 and "at least 8" in err
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    assert "created admin root (approved)" in run(capsys, "add-admin", "root", "--password-stdin", "--db", sqlite_url)[1]
    assert run(capsys, "approve", "zed", "--db", sqlite_url)[1].strip() == "zed: approved"
    assert run(capsys, "disable", "nobody", "--db", sqlite_url)[0] == 2
    assert run(capsys, "set-overlap", "0", "--db", sqlite_url)[0] == 2
    assert run(capsys, "set-overlap", "3", "--db", sqlite_url)[0] == 0
    code, text, _ = run(capsys, "stats", "--db", sqlite_url)
    assert "overlap: 3 labeler(s) per item" in text


def test_bad_database_urls_are_reported(capsys, tmp_path):
    code, _, err = run(capsys, "stats", "--db", "sqlite://")
    assert code == 2 and "in-memory" in err
    code, _, err = run(capsys, "stats", "--db", "nosuchdb://x")
    assert code == 2 and "cannot open the database" in err


def test_the_top_level_cli_dispatches_here(sqlite_url, capsys):
    from rlhf.cli import main as rlhf_main

    assert rlhf_main(["label", "stats", "--db", sqlite_url]) == 0
    assert "overlap" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        rlhf_main(["label", "--help"])


def test_import_refuses_a_prompt_id_used_twice_in_a_file(sqlite_url, tmp_path, capsys):
    records = [{"id": "p-1", "prompt": "first"}, {"id": "p-2", "prompt": "second"}, {"id": "p-1", "prompt": "third"}]
    path = write_jsonl(tmp_path / "p.jsonl", records)
    code, _, err = run(capsys, "import-prompts", str(path), "--db", sqlite_url)
    assert code == 2 and "p.jsonl:3: field 'id': 'p-1' is also the id of line 1" in err
    assert items(sqlite_url) == 0
    code, out, _ = run(capsys, "import-prompts", str(path), "--db", sqlite_url, "--skip-bad-records")
    assert code == 0 and "added 2 task(s), skipped 1 bad record(s)" in out
    screening = write_jsonl(tmp_path / "s.jsonl", [{"prompt_id": "x", "prompt": "a", "response": "r"},
                                                   {"prompt_id": "x", "prompt": "b", "response": "r"}])
    code, _, err = run(capsys, "import-screening", str(screening), "--task", "demonstration", "--db", sqlite_url)
    assert code == 2 and "s.jsonl:2: field 'prompt_id': 'x' is also the id of line 1" in err


@pytest.mark.parametrize("overlap", ["0", "-1", "101"])
def test_import_refuses_an_overlap_that_would_never_hand_items_out(sqlite_url, tmp_path, capsys, overlap):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "p"}])
    samples = write_jsonl(tmp_path / "s.jsonl", [sample("a", j) for j in range(2)])
    code, _, err = run(capsys, "import-prompts", str(prompts), "--overlap", overlap, "--db", sqlite_url)
    assert code == 2 and f"--overlap {overlap}: 1 to 100 labelers per item" in err
    code, _, err = run(capsys, "import-samples", str(samples), "--k", "2", "--overlap", overlap, "--db", sqlite_url)
    assert code == 2 and f"--overlap {overlap}" in err
    assert items(sqlite_url) == 0


def test_import_names_the_file_and_line_of_bad_utf8(sqlite_url, tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"prompt": "fine"}\n\n{"prompt": "caf\xe9"}\n')  # latin-1, not UTF-8, on line 3
    code, _, err = run(capsys, "import-prompts", str(path), "--db", sqlite_url)
    assert code == 2 and "p.jsonl:3: field '<encoding>': not valid UTF-8: byte 0xe9 at byte 16 of the line" in err
    assert items(sqlite_url) == 0


def test_reset_password_and_set_lease_commands(sqlite_url, capsys, monkeypatch):
    import io

    from rlhf.label.auth import authenticate

    db = Database(sqlite_url)
    add_user(db, "ann")
    with db.reading() as s:
        version = s.scalar(select(User.session_version).where(User.username == "ann"))
    monkeypatch.setattr("sys.stdin", io.StringIO("a fresh password\n"))
    code, out, _ = run(capsys, "reset-password", "ann", "--password-stdin", "--db", sqlite_url)
    assert code == 0 and "their sessions have ended" in out
    assert authenticate(db, "ann", "a fresh password") is not None and authenticate(db, "ann", PASSWORD) is None
    with db.reading() as s:
        assert s.scalar(select(User.session_version).where(User.username == "ann")) == version + 1
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert run(capsys, "reset-password", "ann", "--password-stdin", "--db", sqlite_url)[0] == 2
    monkeypatch.setattr("sys.stdin", io.StringIO("a fresh password\n"))
    assert run(capsys, "reset-password", "nobody", "--password-stdin", "--db", sqlite_url)[0] == 2
    assert run(capsys, "set-lease", "0", "--db", sqlite_url)[0] == 2
    assert run(capsys, "set-lease", "²", "--db", sqlite_url)[0] == 2
    assert run(capsys, "set-lease", "90", "--db", sqlite_url)[1].strip() == "lease_minutes set to 90"
    with db.reading() as s:
        from rlhf.label.db import setting

        assert setting(s, "lease_minutes") == 90
    db.dispose()


def test_serve_needs_a_secret_for_postgresql(capsys, monkeypatch):
    from rlhf.label import cli

    monkeypatch.delenv("RLHF_LABEL_SECRET", raising=False)
    args = cli._parser().parse_args(["serve", "--db", "postgresql://u@h/db"])
    assert cli._secret_path(args) is None
    args = cli._parser().parse_args(["serve", "--db", "sqlite:///some/where/labels.db"])
    assert str(cli._secret_path(args)).endswith("some/where/labels.db.secret")
