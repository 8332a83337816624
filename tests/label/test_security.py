"""Untrusted text is shown escaped, cookies are signed and locked down, passwords are argon2id."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from tests.label.conftest import add_user, csrf_of
from tests.label.label_helpers import add_rankings, form_fields, ranking_form, task_id, write_jsonl

from rlhf.label import imports
from rlhf.label.models import User

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'
ESCAPED = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"


@pytest.fixture
def people(db):
    add_user(db, "boss", role="admin")
    add_user(db, "ann")
    add_user(db, "cat", status="candidate")


def test_xss_in_prompts_and_responses_is_shown_escaped_everywhere(db, people, client_for, tmp_path):
    add_rankings(db, tmp_path, k=2, prompt=XSS, responses=[XSS, "fine"])
    imports.import_prompts(db, write_jsonl(tmp_path / "conv.jsonl", [{"prompt": [
        {"role": "system", "content": XSS}, {"role": "user", "content": XSS}]}]))
    imports.import_screening(db, write_jsonl(tmp_path / "s.jsonl", [{"prompt": XSS, "response": XSS}]), task="demonstration")
    ann = client_for("ann")
    pages = []
    for _ in range(2):
        tid = task_id(ann.get("/next", follow_redirects=False))
        page = ann.get(f"/task/{tid}").text
        pages.append(page)
        if "Rank the responses" in page:
            ann.post(f"/task/{tid}", data={**form_fields(page), **ranking_form(2, [0, 1])})
        else:
            ann.post(f"/task/{tid}", data={**form_fields(page), "response": XSS})
    cat = client_for("cat")
    tid = task_id(cat.get("/next", follow_redirects=False))
    pages.append(cat.get(f"/task/{tid}").text)
    cat.post(f"/task/{tid}", data={**form_fields(pages[-1]), "response": XSS})
    pages += [ann.get("/history").text, client_for("boss").get("/admin/screening/cat").text]
    for page in pages:
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(" in page
    assert ESCAPED in pages[0] or ESCAPED in pages[1]


def test_security_headers_forbid_inline_script_and_framing(db, people, client_for):
    response = client_for("ann").get("/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_session_cookie_is_signed_httponly_secure_and_samesite(db, people, client_for):
    client = client_for()
    token = csrf_of(client)
    response = client.post("/login", data={"username": "ann", "password": "correct horse battery", "csrf_token": token},
                           follow_redirects=False)
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "secure" in cookie and "samesite=lax" in cookie
    value = client.cookies["rlhf_label_session"]
    forged = client_for()
    forged.cookies.set("rlhf_label_session", value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB"))
    assert forged.get("/", follow_redirects=False).status_code == 303  # a tampered cookie logs no one in


def test_csrf_token_of_one_session_does_not_work_in_another(db, people, client_for):
    ann, boss = client_for("ann"), client_for("boss")
    stolen = csrf_of(ann, "/")
    assert boss.post("/admin/settings", data={"overlap": "3", "csrf_token": stolen}).status_code == 403


def test_passwords_are_argon2id_with_a_real_cost():
    from argon2 import PasswordHasher, extract_parameters

    # conftest swaps in a cheap hasher for speed; the app's own is the library default.
    params = extract_parameters(PasswordHasher().hash("x"))
    assert params.type.name == "ID" and params.memory_cost >= 19 * 1024 and params.time_cost >= 2
    from rlhf.label import auth

    assert auth._DUMMY_HASH.startswith("$argon2id$")


def mode(path) -> int:
    import stat

    return stat.S_IMODE(path.stat().st_mode)


def test_the_sqlite_database_and_its_wal_are_created_owner_only(tmp_path, monkeypatch):
    import os

    from rlhf.label.db import Database

    old = os.umask(0o022)  # the usual umask, which made labels.db 0644
    try:
        db = Database(f"sqlite:///{tmp_path / 'sub' / 'labels.db'}")
        add_user(db, "ann")
        with db.reading() as s:
            s.execute(select(User.id)).all()  # the read side opens -shm too
        files = {p.name: mode(p) for p in (tmp_path / "sub").iterdir()}
        db.dispose()
    finally:
        os.umask(old)
    assert files["labels.db"] == 0o600
    assert {name: m for name, m in files.items() if name.startswith("labels.db-")} == {
        "labels.db-wal": 0o600, "labels.db-shm": 0o600}


def test_loose_permissions_on_an_old_database_are_warned_about(tmp_path, caplog):
    from rlhf.label.db import Database

    path = tmp_path / "labels.db"
    Database(f"sqlite:///{path}").dispose()
    path.chmod(0o644)
    with caplog.at_level("WARNING", logger="rlhf.label"):
        Database(f"sqlite:///{path}").dispose()
    assert f"{path} is readable by other users (mode 644)" in caplog.text and "chmod 600" in caplog.text


def test_the_cookie_secret_lives_in_its_own_owner_only_file(tmp_path, monkeypatch, caplog):
    from rlhf.label.auth import load_secret

    monkeypatch.delenv("RLHF_LABEL_SECRET", raising=False)
    path = tmp_path / "labels.db.secret"
    first = load_secret(path)
    assert len(first) >= 32 and mode(path) == 0o600
    assert load_secret(path) == first  # a restart logs no one out
    assert [p.name for p in tmp_path.iterdir()] == ["labels.db.secret"]  # no temporary file left behind
    path.chmod(0o644)
    with caplog.at_level("WARNING", logger="rlhf.label"):
        assert load_secret(path) == first
    assert "forge an admin's cookie" in caplog.text
    monkeypatch.setenv("RLHF_LABEL_SECRET", "e" * 40)
    assert load_secret(None) == "e" * 40  # the environment wins, and PostgreSQL needs no file then
    monkeypatch.setenv("RLHF_LABEL_SECRET", "too short")
    with pytest.raises(ValueError, match="at least 32 characters"):
        load_secret(path)
    monkeypatch.delenv("RLHF_LABEL_SECRET")
    with pytest.raises(ValueError, match="RLHF_LABEL_SECRET or pass --secret-file"):
        load_secret(None)


def test_reading_the_database_no_longer_forges_a_cookie(db, people, app, client_for):
    """The issue's attack: the secret was a row of labels.db, so reading the file was
    enough to sign an admin's session cookie."""
    from sqlalchemy import text

    client_for("boss").get("/admin")
    with db.reading() as s:
        assert s.execute(text("SELECT value FROM settings WHERE key = 'session_secret'")).all() == []
