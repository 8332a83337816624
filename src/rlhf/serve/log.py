"""The request log: every accepted prompt, committed before the reply is sent.

SQLite in WAL mode with `synchronous=FULL`: each commit fsyncs the write-ahead
log, so once `start()` returns, a crash (kill -9, power loss) keeps the row. A
request is acknowledged only after that, so no acknowledged request is lost. The
response is added by `finish()` after generation; a crash in between leaves the
prompt with status "started", which is still a prompt worth keeping.

The file holds whatever users typed, secrets included, so it is created owner-only
(0600); SQLite gives its -wal and -shm files the database file's mode.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from rlhf.data.prompt_log import SCHEMA

log = logging.getLogger(__name__)


class RequestLog:
    """Thread-safe writer of the `requests` table (schema in rlhf.data.prompt_log)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _create_private(self.path)
        # One connection shared by the request threads, serialised by a lock: SQLite
        # allows one writer at a time anyway, and commits are milliseconds.
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(SCHEMA)

    def start(self, ids: list[str], user_id: str | None, model: str, endpoint: str, params: dict,
              prompts: list) -> None:
        """Insert one row per prompt and commit (durable when this returns)."""
        now = time.time()
        rows = [
            (row_id, now, user_id, model, endpoint, json.dumps(params), json.dumps(prompt, ensure_ascii=False))
            for row_id, prompt in zip(ids, prompts)
        ]
        with self._lock:
            self._conn.execute("BEGIN")
            self._conn.executemany(
                "INSERT INTO requests (id, created, user_id, model, endpoint, params, prompt, status) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'started')",
                rows,
            )
            self._conn.execute("COMMIT")

    def finish(self, row_id: str, texts: list[str], finish_reasons: list[str], prompt_tokens: int,
               completion_tokens: int, status: str = "done") -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE requests SET response = ?, finish_reasons = ?, prompt_tokens = ?, completion_tokens = ?, "
                "status = ? WHERE id = ?",
                (json.dumps(texts, ensure_ascii=False), json.dumps(finish_reasons), prompt_tokens,
                 completion_tokens, status, row_id),
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _create_private(path: Path) -> None:
    """Create the file owner-only before SQLite opens it; warn about an existing one others can read."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("%s is readable by others (mode %o); it holds users' prompts: chmod 600 %s", path, mode, path)
