"""Engine, migrations and transactions.

SQLite is the embedded default. It is opened in WAL mode with synchronous=FULL so
that a commit is on disk before the server answers (an acknowledged submission
survives kill -9 and power loss), and every transaction starts with BEGIN
IMMEDIATE: a deferred transaction that reads and then writes fails at once with
"database is locked" when another writer committed in between, instead of waiting.
PostgreSQL needs none of this; the same code runs on both.
"""

from __future__ import annotations

import os
import secrets
import threading
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from rlhf.label.models import Setting

DEFAULT_DB = "sqlite:///labels.db"
MIGRATIONS = Path(__file__).parent / "migrations"


def default_db_url() -> str:
    return os.environ.get("RLHF_LABEL_DB", DEFAULT_DB)


def normalize_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here (the only driver the `label` extra installs)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # Python's sqlite3 would otherwise issue its own BEGIN; we issue BEGIN IMMEDIATE below.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    if make_url(url).get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    database = make_url(url).database
    if not database or database == ":memory:":
        raise ValueError("use a SQLite file (sqlite:///labels.db): an in-memory database loses every label on exit")
    Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=10, max_overflow=30
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_begin(conn) -> None:
    # Reads take a WAL snapshot and never wait for writers; writes take the lock up front.
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("read_only") else "BEGIN IMMEDIATE")


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
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessions = sessionmaker(self.engine.execution_options(read_only=True), expire_on_commit=False)
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
        """A transaction that only reads (on SQLite: no write lock, no waiting for writers)."""
        with self.read_sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def get_setting(session: Session, key: str, default: str | None = None) -> str | None:
    row = session.get(Setting, key)
    return row.value if row is not None else default


def set_setting(session: Session, key: str, value: str) -> None:
    row = session.get(Setting, key)
    if row is None:
        session.add(Setting(key=key, value=value))
    else:
        row.value = value


def session_secret(db: Database) -> str:
    """The key that signs session cookies: RLHF_LABEL_SECRET, else one made once and
    kept in the database so a restart does not log everyone out."""
    if os.environ.get("RLHF_LABEL_SECRET"):
        return os.environ["RLHF_LABEL_SECRET"]
    with db.transaction() as s:
        found = s.scalar(select(Setting.value).where(Setting.key == "session_secret"))
    if found:
        return found
    try:
        with db.transaction() as s:
            s.add(Setting(key="session_secret", value=secrets.token_urlsafe(48)))
    except IntegrityError:
        pass  # another process made it first; use theirs
    with db.transaction() as s:
        return s.scalar(select(Setting.value).where(Setting.key == "session_secret"))
