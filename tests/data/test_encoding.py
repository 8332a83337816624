"""Text that is not valid UTF-8 or Unicode: an error with file, line and field, skippable like any bad record.

Before, one bad byte raised a UnicodeDecodeError naming neither file nor line, from every
reader, and skip_bad_records could not skip it; a "\\ud800" escape passed validation and
crashed `prepare` when it wrote the split.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from rlhf.cli import main as rlhf_main
from rlhf.data import RecordError, read_records
from rlhf.data.prepare import PrepareConfig, prepare
from rlhf.data.prompt_log import SCHEMA, iter_logged_prompts


def _bytes_file(path, lines: list[bytes]):
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


@pytest.mark.parametrize("suffix, kind, good, bad", [
    (".jsonl", "prompt", b'{"prompt": "ok"}', b'{"prompt": "caf\xe9 au lait"}'),  # Latin-1, not UTF-8
    (".txt", "pretrain", b"a line of text", b"caf\xff"),
])
def test_a_bad_byte_names_file_line_and_is_skippable(tmp_path, suffix, kind, good, bad):
    f = _bytes_file(tmp_path / f"in{suffix}", [good, bad, good])
    with pytest.raises(RecordError) as e:
        read_records(f, kind)
    assert (e.value.source, e.value.line, e.value.field) == (str(f), 2, "<encoding>")
    assert "not valid UTF-8: byte 0x" in str(e.value) and str(e.value).startswith(f"{f}:2:")
    stats = {}
    assert len(read_records(f, kind, skip_bad_records=True, stats=stats)) == 2
    assert stats == {"read": 2, "skipped": 1}


def test_a_json_array_names_the_record_and_field_of_a_bad_byte(tmp_path):
    f = tmp_path / "in.json"
    f.write_bytes(b'[{"prompt": "ok"}, {"prompt": "ok", "user_id": "u\xff"}, {"prompt": "fine"}]')
    with pytest.raises(RecordError, match=r"in.json:2: field 'user_id': not valid Unicode text: byte 0xff"):
        read_records(f, "prompt")
    assert [r["prompt"] for r in read_records(f, "prompt", skip_bad_records=True)] == ["ok", "fine"]


def test_a_lone_surrogate_escape_is_a_field_error(tmp_path):
    f = tmp_path / "in.jsonl"
    f.write_text('{"prompt": "ok"}\n{"prompt": [{"role": "user", "content": "x \\ud800 y"}]}\n')
    with pytest.raises(RecordError, match=r"in.jsonl:2: field 'prompt\[0\].content': .*lone surrogate \\ud800"):
        read_records(f, "prompt")
    assert len(read_records(f, "prompt", skip_bad_records=True)) == 1


def test_a_byte_order_mark_is_not_part_of_the_first_record(tmp_path):
    f = _bytes_file(tmp_path / "in.jsonl", [b'\xef\xbb\xbf{"prompt": "first"}', b'{"prompt": "second"}'])
    assert [r["prompt"] for r in read_records(f, "prompt")] == ["first", "second"]
    g = tmp_path / "in.json"
    g.write_bytes(b'\xef\xbb\xbf[{"prompt": "first"}]')
    assert read_records(g, "prompt")[0]["prompt"] == "first"


def _log_with_rows(path, prompts: list[bytes], user_ids: list[bytes | None] | None = None):
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    for i, prompt in enumerate(prompts):
        user = (user_ids or [None] * len(prompts))[i]
        # CAST(blob AS TEXT) stores the bytes as they are, as another writer or a damaged file could.
        conn.execute(
            "INSERT INTO requests (id, created, user_id, model, endpoint, params, prompt, status) "
            "VALUES (?, 0, CAST(? AS TEXT), 'm', 'completions', '{}', CAST(? AS TEXT), 'done')",
            (f"r-{i}", user, prompt),
        )
    conn.commit()
    conn.close()
    return path


def test_the_prompt_log_names_the_row_and_column_of_a_bad_byte(tmp_path):
    prompts = [b'"ok"', b'"caf\xe9"', b'"fine"', b'"x \\ud800"', b'"last"', b'"  "']
    log = _log_with_rows(tmp_path / "prompts.db", prompts, [b"u1", b"u2", b"u\xff", b"u4", b"u5", b"u6"])
    with pytest.raises(RecordError) as e:
        list(iter_logged_prompts(log))
    assert (e.value.line, e.value.field) == (2, "prompt") and "not valid UTF-8: byte 0xe9" in str(e.value)
    stats = {}
    kept = list(iter_logged_prompts(log, skip_bad_records=True, stats=stats))
    assert [r["prompt"] for r in kept] == ["ok", "last"]  # row 3: user_id; row 4: a lone surrogate
    assert stats == {"read": 2, "skipped": 3, "blank": 1}  # row 6: blank, skipped whatever the options


def test_prepare_reports_and_skips_bad_text_from_the_cli(tmp_path, capsys):
    src = _bytes_file(tmp_path / "in.jsonl", [b'{"prompt": "one"}', b'{"prompt": "t\xffwo"}',
                                              b'{"prompt": "x \\ud800 y"}', b'{"prompt": "three"}'])
    out = tmp_path / "out"
    assert rlhf_main(["data", "prepare", "--in", str(src), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{src}:2: field '<encoding>': not valid UTF-8" in err and "Traceback" not in err
    assert not out.exists() or list(out.iterdir()) == []
    report = prepare(src, out, PrepareConfig(progress=False, skip_bad_records=True, fractions=(1.0, 0.0, 0.0)))
    assert report["skipped/bad_record"] == 2 and report["split/train"] == 2
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["prompt"] for r in rows] == ["one", "three"]


def test_raw_rows_name_text_that_is_not_unicode_instead_of_passing_it_on(tmp_path, capsys):
    """iter_raw feeds the label importer and eval generate/score: a bad byte in a .json document (read with
    surrogateescape) or a "\\ud800" escape must come as an error with its line, not as a lone surrogate that
    fails only when the output is written."""
    from rlhf.data.files import iter_raw

    doc = tmp_path / "rows.json"
    doc.write_bytes(b'[{"context": "ok"}, {"context": "caf\xe9"}, {"context": "x \\ud800"}]')
    rows = list(iter_raw(doc))
    assert rows[0] == (1, {"context": "ok"})
    assert [(r.line, r.field) for _, r in rows[1:]] == [(2, "context"), (3, "context")]
    assert "byte 0xe9 is not UTF-8" in str(rows[1][1]) and "lone surrogate \\ud800" in str(rows[2][1])
    assert rlhf_main(["eval", "generate", "--out", str(tmp_path / "gen"), "models=[nowhere]",
                      f"data_file={doc}"]) == 2
    assert f"{doc}:2: field 'context': not valid Unicode text" in capsys.readouterr().err
