"""The migrations build exactly the models' schema, run twice harmlessly, and
SQLite is opened durable (WAL, synchronous=FULL)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from rlhf.label.db import Database, migrate, normalize_url
from rlhf.label.models import Base


def test_migrations_match_the_models(db):
    migrate(db.engine)  # a second run is a no-op
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0002"


def test_sqlite_is_wal_with_full_sync(sqlite_url):
    db = Database(sqlite_url)
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    db.dispose()


def test_postgresql_urls_use_psycopg3():
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
