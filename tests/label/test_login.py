"""Logging in: guessing is slowed per address and per username without locking a
real user out, the password is checked outside the write lock, logging out and
password changes end sessions, and admins can reset a password."""

from __future__ import annotations

import logging
import sqlite3
import threading

import pytest
from tests.label.conftest import PASSWORD, add_user, csrf_of, login
from sqlalchemy import select

from rlhf.label.db import set_setting
from rlhf.label.models import User
from rlhf.label.throttle import DEVICE_COOKIE, FREE_PER_ADDRESS, FREE_PER_USERNAME

NEW_PASSWORD = "a brand new passphrase"
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def people(db):
    add_user(db, "boss", role="admin")
    add_user(db, "ann")


@pytest.fixture
def clock(app):
    """The login backoff's clock, moved by hand: no test waits for a lock to pass."""
    now = [1000.0]
    app.state.logins.backoff.clock = lambda: now[0]
    return now


def user_id(db, name: str) -> int:
    with db.reading() as s:
        return s.scalar(select(User.id).where(User.username == name))


def write_from_another_process(db) -> bool:
    """Try to commit a write on a separate SQLite connection without waiting (as
    another process would, past this process's write queue); True if it committed."""
    other = sqlite3.connect(db.engine.url.database, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO settings (key, value) VALUES ('probe', 'x') ON CONFLICT DO NOTHING")
        other.execute("COMMIT")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        other.close()


def others_can_write(db) -> bool:
    """Can another process, and another request of this server (which queues on the
    process's write lock), each commit a write right now?"""
    if not write_from_another_process(db):
        return False
    done = threading.Event()

    def labeler_submits():
        with db.transaction() as s:
            set_setting(s, "probe", "y")
        done.set()

    threading.Thread(target=labeler_submits, daemon=True).start()
    # The wait only runs out when the write is stuck behind us, which is the failure.
    return done.wait(timeout=10)


def test_guessing_locks_the_username_but_not_a_browser_that_logged_in_before(db, people, client_for, clock, caplog):
    ann = client_for("ann")  # ann's own browser: it now holds a device cookie for ann
    assert DEVICE_COOKIE in ann.cookies
    ann.post("/logout", data={"csrf_token": csrf_of(ann, "/")})
    guesser = client_for()
    with caplog.at_level(logging.WARNING, logger="rlhf.label"):
        for _ in range(FREE_PER_USERNAME + 1):
            assert login(guesser, "ann", "wrong guess").status_code == 401
    assert "failed login as 'ann' from testclient" in caplog.text
    locked = login(guesser, "ann", PASSWORD)  # even the right password is not checked while locked
    assert locked.status_code == 429 and locked.headers["retry-after"] == "1" and "Too many failed logins" in locked.text
    assert login(ann, "ann").status_code == 303  # the real user's browser gets in all the same
    assert login(client_for(), "boss").status_code == 303  # another name from the same address too
    clock[0] += 1
    assert login(guesser, "ann", "wrong again").status_code == 401
    assert login(guesser, "ann", PASSWORD).headers["retry-after"] == "2"  # doubled


def test_guessing_many_names_from_one_address_locks_the_address(db, people, client_for, clock):
    ann = client_for("ann")
    ann.post("/logout", data={"csrf_token": csrf_of(ann, "/")})
    guesser = client_for()
    for i in range(FREE_PER_ADDRESS + 1):
        assert login(guesser, f"name{i}", "wrong guess").status_code == 401
    assert login(guesser, "boss", PASSWORD).status_code == 429
    assert login(ann, "ann").status_code == 303  # a trusted browser is counted by itself, not by address
    forged = client_for()
    forged.cookies.set(DEVICE_COOKIE, "made-up", path="/login")
    assert login(forged, "ann").status_code == 429


@sqlite_only
def test_the_password_is_checked_and_rehashed_outside_the_write_lock(db, people, client_for, monkeypatch):
    """argon2 takes ~0.15 s: inside the write transaction it stalled every submit on
    SQLite. While a password is verified or re-hashed (a hash made with older
    parameters is upgraded at login), another connection must be able to write."""
    from argon2 import PasswordHasher

    from rlhf.label import auth

    with db.transaction() as s:  # a hash from older, different parameters
        row = s.scalar(select(User).where(User.username == "ann"))
        row.password_hash = PasswordHasher(time_cost=2, memory_cost=1024, parallelism=1).hash(PASSWORD)
    could_write = []
    inner = auth._hasher

    class Probe:
        def verify(self, hashed, password):
            could_write.append(("verify", others_can_write(db)))
            return inner.verify(hashed, password)

        def hash(self, password):
            could_write.append(("hash", others_can_write(db)))
            return inner.hash(password)

        def __getattr__(self, name):
            return getattr(inner, name)

    monkeypatch.setattr(auth, "_hasher", Probe())
    assert login(client_for(), "ann").status_code == 303
    assert login(client_for(), "ann", "wrong password").status_code == 401
    assert could_write == [("verify", True), ("hash", True), ("verify", True)]
    with db.reading() as s:  # the re-hash was stored
        assert not inner.check_needs_rehash(s.scalar(select(User.password_hash).where(User.username == "ann")))


def test_logging_out_ends_the_session_even_for_a_saved_cookie(db, people, client_for):
    ann = client_for("ann")
    saved = ann.cookies["rlhf_label_session"]
    assert ann.post("/logout", data={"csrf_token": csrf_of(ann, "/")}, follow_redirects=False).status_code == 303
    replay = client_for()
    replay.cookies.set("rlhf_label_session", saved)
    assert replay.get("/", follow_redirects=False).status_code == 303  # to the login page
    assert login(client_for(), "ann").status_code == 303  # and logging in again works


def test_changing_the_password_ends_the_other_sessions_and_keeps_this_one(db, people, client_for, clock):
    here, elsewhere = client_for("ann"), client_for("ann")
    token = csrf_of(here, "/password")
    form = {"password": PASSWORD, "new_password": NEW_PASSWORD, "again": NEW_PASSWORD, "csrf_token": token}
    wrong = here.post("/password", data={**form, "password": "not my password"})
    assert wrong.status_code == 400 and "current password is wrong" in wrong.text
    differ = here.post("/password", data={**form, "again": "something else entirely"})
    assert differ.status_code == 400 and "differ" in differ.text
    short = here.post("/password", data={**form, "new_password": "short", "again": "short"})
    assert short.status_code == 400 and "at least 8" in short.text
    done = here.post("/password", data=form)
    assert done.status_code == 200 and "Your password is changed" in done.text
    assert here.get("/", follow_redirects=False).status_code == 200
    assert elsewhere.get("/", follow_redirects=False).status_code == 303
    assert login(client_for(), "ann").status_code == 401
    assert login(client_for(), "ann", NEW_PASSWORD).status_code == 303


def test_admin_resets_a_password_which_ends_sessions_and_lifts_the_lock(db, people, client_for, clock):
    ann = client_for("ann")
    guesser = client_for()
    for _ in range(FREE_PER_USERNAME + 1):
        login(guesser, "ann", "wrong guess")
    assert login(client_for(), "ann").status_code == 429  # a new browser is locked out with the guesser
    admin = client_for("boss")
    token = csrf_of(admin, "/admin/users")
    url = f"/admin/users/{user_id(db, 'ann')}/password"
    assert admin.post(url, data={"password": "short", "csrf_token": token}).status_code == 400
    assert admin.post("/admin/users/999/password", data={"password": NEW_PASSWORD, "csrf_token": token}).status_code == 404
    assert admin.post(url, data={"password": NEW_PASSWORD, "csrf_token": token}, follow_redirects=False).status_code == 303
    assert ann.get("/", follow_redirects=False).status_code == 303
    assert login(client_for(), "ann", NEW_PASSWORD).status_code == 303
    own = f"/admin/users/{user_id(db, 'boss')}/password"
    assert admin.post(own, data={"password": NEW_PASSWORD, "csrf_token": token}, follow_redirects=False).status_code == 303
    assert admin.get("/admin/users").status_code == 200  # one's own reset keeps one logged in here
    assert login(client_for(), "boss", NEW_PASSWORD).status_code == 303


def test_labelers_cannot_reset_passwords(db, people, client_for):
    ann = client_for("ann")
    url = f"/admin/users/{user_id(db, 'boss')}/password"
    assert ann.post(url, data={"password": NEW_PASSWORD, "csrf_token": csrf_of(ann, "/")}).status_code == 403
    assert login(client_for(), "boss").status_code == 303


def test_a_write_inside_a_read_session_fails_at_once(db):
    """reading() cannot write: the set_status bug (a write in a read session, which
    failed under load with "database is locked") now fails in every test."""
    with pytest.raises(Exception, match="(?i)read.?only"):
        with db.reading() as s:
            set_setting(s, "overlap", "2")
    with db.transaction() as s:
        set_setting(s, "overlap", "2")  # the same write in a write transaction is fine


@sqlite_only
def test_approving_under_a_concurrent_write_does_not_fail(db, people, client_for):
    """Another process commits between the admin's read of the user and the write of
    the new status: the approve must still succeed (it failed with 'database is
    locked' when it wrote inside a read transaction)."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    add_user(db, "cat", status="candidate")
    admin = client_for("boss")
    token = csrf_of(admin, "/admin/users")

    def other_process_writes(session, *_):
        write_from_another_process(db)  # refused while the approve holds the write lock: it waits its turn

    event.listen(Session, "before_flush", other_process_writes)
    try:
        response = admin.post(f"/admin/users/{user_id(db, 'cat')}/status",
                              data={"status": "approved", "csrf_token": token}, follow_redirects=False)
    finally:
        event.remove(Session, "before_flush", other_process_writes)
    assert response.status_code == 303
    with db.reading() as s:
        assert s.scalar(select(User.status).where(User.username == "cat")) == "approved"
