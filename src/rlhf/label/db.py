"""Engine, migrations and transactions.

SQLite is the embedded default. It is opened in WAL mode with synchronous=FULL so
that a commit is on disk before the server answers (an acknowledged submission
survives kill -9 and power loss), and every transaction starts with BEGIN
IMMEDIATE: a deferred transaction that reads and then writes fails at once with
"database is locked" when another writer committed in between, instead of waiting.
PostgreSQL needs none of this; the same code runs on both.

`reading()` sessions come from a second engine whose connections refuse writes
(SQLite `query_only`, PostgreSQL READ ONLY): a write inside a read session would
skip the write lock and fail under load with "database is locked", so it fails
at once, in every test, instead.

The SQLite file is created owner-only (0600): it holds every prompt, answer and
password hash. SQLite gives its -wal and -shm files the same mode.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from rlhf.label.models import Setting

DEFAULT_DB = "sqlite:///labels.db"
# setting -> (default, lowest, highest, what it means); set on the admin page or the CLI.
SETTINGS = {
    "overlap": (1, 1, 100, "labelers per item"),
    "lease_minutes": (60, 1, 7 * 24 * 60, "minutes a labeler may hold a task before another labeler may take it"),
}
MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)


def default_db_url() -> str:
    return os.environ.get("RLHF_LABEL_DB", DEFAULT_DB)


def normalize_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here (the only driver the `label` extra installs)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _sqlite_pragmas(dbapi_conn, _record, read_only: bool = False) -> None:
    # Python's sqlite3 would otherwise issue its own BEGIN; we issue BEGIN IMMEDIATE below.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    if read_only:
        cur.execute("PRAGMA query_only=ON")
    cur.close()


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for other backends); refuses in-memory databases."""
    url = make_url(normalize_url(url))
    if url.get_backend_name() != "sqlite":
        return None
    if not url.database or url.database == ":memory:":
        raise ValueError("use a SQLite file (sqlite:///labels.db): an in-memory database loses every label on exit")
    return Path(url.database).expanduser().resolve()


def create_private_file(path: Path) -> None:
    """Create `path` empty and owner-only unless it exists; warn when an existing one
    can be read by other users."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("%s is readable by other users (mode %o); it holds secrets: chmod 600 %s", path, mode, path)


def make_engine(url: str, read_only: bool = False) -> Engine:
    url = normalize_url(url)
    path = sqlite_path(url)
    if path is None:
        options = {"postgresql_readonly": True} if read_only else {}
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, execution_options=options)
    if not read_only:
        create_private_file(path)  # before SQLite creates it with the umask's mode
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=10, max_overflow=30
    )
    event.listen(engine, "connect", lambda conn, record: _sqlite_pragmas(conn, record, read_only))
    event.listen(engine, "begin", _sqlite_begin_reading if read_only else _sqlite_begin_writing)
    return engine


def _sqlite_begin_writing(conn) -> None:
    # A writer takes the lock up front; a deferred BEGIN would fail at its first write
    # if another writer committed after its first read.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_begin_reading(conn) -> None:
    # A reader takes a WAL snapshot and never waits for writers.
    conn.exec_driver_sql("BEGIN")


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (a fresh database just works)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Database:
    """An engine and its session factory; `transaction()` is the only way in."""

    def __init__(self, url: str, run_migrations: bool = True):
        self.url = normalize_url(url)
        self.engine = make_engine(self.url)
        if run_migrations:
            migrate(self.engine)
        self.read_engine = make_engine(self.url, read_only=True)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)
        # SQLite has one writer at a time, and a writer that finds the lock taken polls
        # with sleeps of up to 100 ms: under load the tail latency is those sleeps. So the
        # threads of one process queue on a lock here instead (other processes, such as an
        # import while serving, still meet SQLite's own busy timeout).
        self._write_lock = threading.Lock() if self.engine.dialect.name == "sqlite" else nullcontext()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """Commit on success, roll back on error. The commit is durable when this exits."""
        with self._write_lock, self.sessions.begin() as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A transaction that only reads (on SQLite: no write lock, no waiting for
        writers); a write in it raises."""
        with self.read_sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
        self.read_engine.dispose()


def get_setting(session: Session, key: str, default: str | None = None) -> str | None:
    row = session.get(Setting, key)
    return row.value if row is not None else default


def set_setting(session: Session, key: str, value: str) -> None:
    row = session.get(Setting, key)
    if row is None:
        session.add(Setting(key=key, value=value))
    else:
        row.value = value


def parse_setting(name: str, raw: str) -> int:
    """A setting's value from text, or ValueError naming the field and its range."""
    _, low, high, what = SETTINGS[name]
    if not re.fullmatch(r"[0-9]{1,9}", raw) or not low <= int(raw) <= high:
        raise ValueError(f"{name}: a whole number from {low} to {high} ({what})")
    return int(raw)


def setting(session: Session, name: str) -> int:
    return int(get_setting(session, name, str(SETTINGS[name][0])))
