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


def test_a_database_of_the_first_schema_upgrades_with_its_users_and_answers(db, tmp_path):
    """A labels.db made by the previous release (schema 0001, secret in the settings
    table) upgrades in place: users keep their passwords, answers stay, the exposed
    secret is dropped."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text
    from tests.label.conftest import PASSWORD, SECRET, login
    from tests.label.label_helpers import add_prompts

    from rlhf.label import tasks
    from rlhf.label.app import create_app
    from rlhf.label.auth import CurrentUser, hash_password
    from rlhf.label.db import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    with db.engine.begin() as conn:  # what the old release wrote: it knew no session_version
        conn.execute(text("INSERT INTO users (username, password_hash, role, status, created_at) "
                          "VALUES ('ann', :h, 'labeler', 'approved', CURRENT_TIMESTAMP)"), {"h": hash_password(PASSWORD)})
        conn.execute(text("INSERT INTO settings (key, value) VALUES ('session_secret', 'old secret')"))
        user_id = conn.execute(text("SELECT id FROM users")).scalar()
    add_prompts(db, tmp_path, ["answered before the upgrade"])
    ann = CurrentUser(user_id, "ann", "labeler", "approved")
    tasks.submit(db, tasks.next_assignment(db, ann), ann, "t" * 20, tasks.ParsedAnswer(response="hi"))
    db.dispose()
    upgraded = Database(db.url)
    with upgraded.reading() as s:
        assert s.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0002"
        assert s.execute(text("SELECT session_version FROM users")).scalar() == 0
        assert s.execute(text("SELECT count(*) FROM settings WHERE key = 'session_secret'")).scalar() == 0
        assert s.execute(text("SELECT response FROM answers")).scalar() == "hi"
    from fastapi.testclient import TestClient

    with TestClient(create_app(upgraded, SECRET), base_url="https://testserver") as client:
        assert login(client, "ann").status_code == 303
        assert "You have submitted 1 answer(s)" in client.get("/").text
    upgraded.dispose()
