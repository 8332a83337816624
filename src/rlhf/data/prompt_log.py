"""The serving log: one SQLite table of the prompts users sent to `rlhf serve`.

The table is the contract between the server (which writes it, `rlhf.serve.log`)
and prompt preparation (which reads it here). It lives in `data` because imports
go one way: the later stage (serve) may use the earlier one (data), not back.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Iterator

from rlhf.data.records import FieldError, RecordError, check_prompt, check_unicode

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id                TEXT PRIMARY KEY,  -- "<response id>-<prompt index>": one row per prompt
    created           REAL NOT NULL,     -- unix seconds when the request was accepted
    user_id           TEXT,              -- the API key's user; NULL without keys (the body's `user` is in params)
    model             TEXT NOT NULL,     -- the served model name the client asked for
    endpoint          TEXT NOT NULL,     -- "completions" or "chat.completions"
    params            TEXT NOT NULL,     -- JSON: max_tokens, temperature, top_p, n, stop, seed, stream, ...
    prompt            TEXT NOT NULL,     -- JSON: a string, or a list of {role, content} messages
    response          TEXT,              -- JSON list of the n choice texts; NULL until finished
    finish_reasons    TEXT,              -- JSON list, "stop" or "length" per choice
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    status            TEXT NOT NULL      -- "started", then "done", "failed" or "cancelled" (client left)
);
CREATE INDEX IF NOT EXISTS requests_user ON requests (user_id);
"""


def is_blank_prompt(prompt) -> bool:
    """True for a string of only whitespace, or a conversation whose messages all are: nothing to
    answer or train on. The server refuses these; a log written before it did may still hold some."""
    if isinstance(prompt, str):
        return not prompt.strip()
    return isinstance(prompt, list) and all(
        isinstance(m, dict) and isinstance(m.get("content"), str) and not m["content"].strip() for m in prompt)


def is_prompt_log(path: str | Path) -> bool:
    """True for a SQLite file (by its 16-byte header), whatever its suffix."""
    path = Path(path)
    if not path.is_file():
        return False
    with path.open("rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


def iter_logged_prompts(path: str | Path, skip_bad_records: bool = False, stats: dict | None = None) -> Iterator[dict]:
    """Prompt records (shared/formats.md) from a serving log, oldest first.

    Every logged prompt came from the API, so `source` is "customer" (paper 3.2).
    A blank prompt (only whitespace) is skipped and counted in `stats["blank"]`: the log
    is untrusted input, and an older server accepted them. A row whose prompt is not
    valid JSON or not a valid prompt, or whose text is not UTF-8, stops the read with
    the file, row id and field, unless `skip_bad_records`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"serving log {path} does not exist")
    # Read-only so preparing never takes a write lock on a log the server is still using.
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    # Text comes back as bytes and is decoded per column here: sqlite3's own decoding raises for the
    # whole cursor on one bad byte, naming no row, and no row after it could be read or skipped.
    conn.text_factory = bytes
    read = skipped = blank = 0
    try:
        cursor = conn.execute("SELECT rowid, id, created, user_id, model, prompt FROM requests ORDER BY rowid")
        for rowid, row_id, created, user_id, model, prompt_json in cursor:
            try:
                record = _row_record(path, rowid, row_id, created, user_id, model, prompt_json)
            except RecordError:
                if not skip_bad_records:
                    raise
                skipped += 1
                continue
            if record is None:
                blank += 1
                continue
            read += 1
            yield record
    except sqlite3.DatabaseError as e:
        raise RecordError(str(path), 0, "<table>", f"not a serving log with a 'requests' table: {e}") from None
    finally:
        conn.close()
    if stats is not None:
        stats["read"] = stats.get("read", 0) + read
        stats["skipped"] = stats.get("skipped", 0) + skipped
        stats["blank"] = stats.get("blank", 0) + blank


def _row_record(path: Path, rowid: int, row_id, created, user_id, model, prompt_json) -> dict | None:
    """The row as a prompt record, or None for a blank prompt."""
    row_id, user_id, model, prompt_json = (
        _text(path, rowid, column, value)
        for column, value in (("id", row_id), ("user_id", user_id), ("model", model), ("prompt", prompt_json))
    )
    try:
        prompt = json.loads(prompt_json)
    except (TypeError, json.JSONDecodeError) as e:
        raise RecordError(str(path), rowid, "prompt", f"not valid JSON: {getattr(e, 'msg', e)}") from None
    if is_blank_prompt(prompt):
        return None
    try:
        check_unicode(prompt, "prompt")
        prompt = check_prompt(prompt)
    except FieldError as e:
        raise RecordError(str(path), rowid, e.field, e.message) from None
    except TypeError as e:
        raise RecordError(str(path), rowid, "prompt", str(e)) from None
    record = {"id": row_id, "prompt": prompt, "source": "customer", "model": model, "created": created}
    if user_id is not None:
        record["user_id"] = user_id
    return record


def _text(path: Path, rowid: int, column: str, value):
    if not isinstance(value, bytes):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecordError(str(path), rowid, column, f"not valid UTF-8: byte 0x{value[e.start]:02x} at byte "
                          f"{e.start + 1}") from None
