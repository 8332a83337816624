"""What a careless or hostile client sends: bodies are capped before they are read,
forms only (no multipart, so nothing is spooled to disk), a stranger's body is
never parsed, and odd input gets a 4xx, not a 500.

The body tests call the app as an ASGI server would, with a `receive` that counts
the bytes the app actually pulled in."""

from __future__ import annotations

import asyncio
from typing import Iterable

import pytest
from tests.label.conftest import add_user, csrf_of
from tests.label.label_helpers import add_prompts, form_fields, task_id

from rlhf.label.pages import MAX_BODY

CHUNK = 64 * 1024
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def people(db):
    add_user(db, "boss", role="admin")
    add_user(db, "ann")


def post(app, path: str, chunks: Iterable[bytes], headers: dict[str, str]) -> tuple[int, int]:
    """(status, body bytes the app read) for a POST streamed in `chunks`."""

    async def run():
        read, status = 0, []
        stream = iter(chunks)

        async def receive():
            nonlocal read
            chunk = next(stream, None)
            if chunk is None:
                return {"type": "http.request", "body": b"", "more_body": False}
            read += len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": True}

        async def send(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "https",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 50000), "server": ("testserver", 443),
        }
        await app(scope, receive, send)
        return status[0], read

    return asyncio.run(run())


def filler(total: int) -> Iterable[bytes]:
    sent = 0
    while sent < total:
        yield b"x=" + b"a" * (CHUNK - 2)
        sent += CHUNK


def session_cookie(client) -> str:
    return f"rlhf_label_session={client.cookies['rlhf_label_session']}"


def test_a_declared_oversized_body_is_refused_unread(db, people, app):
    status, read = post(app, "/login", filler(10 * MAX_BODY),
                        {"content-type": FORM, "content-length": str(10 * MAX_BODY)})
    assert status == 413 and read == 0


def test_a_stranger_s_body_is_not_read(db, people, app, client_for, tmp_path):
    add_prompts(db, tmp_path, ["p"])
    status, read = post(app, "/task/1", filler(MAX_BODY // 2), {"content-type": FORM})  # chunked, no length
    assert status == 303 and read == 0  # to the login page, before parsing
    client = client_for()
    client.get("/login")  # a session with a CSRF token, but no login
    status, read = post(app, "/admin/settings", filler(MAX_BODY // 2),
                        {"content-type": FORM, "cookie": session_cookie(client)})
    assert status == 303 and read == 0


def test_a_streamed_body_is_cut_off_at_the_limit(db, people, app, client_for, tmp_path):
    add_prompts(db, tmp_path, ["p"])
    ann = client_for("ann")
    tid = task_id(ann.get("/next", follow_redirects=False))
    status, read = post(app, f"/task/{tid}", filler(10 * MAX_BODY), {"content-type": FORM, "cookie": session_cookie(ann)})
    assert status == 413 and MAX_BODY < read <= MAX_BODY + CHUNK


def test_multipart_is_refused_before_any_file_is_read(db, people, app, client_for, tmp_path):
    add_prompts(db, tmp_path, ["p"])
    ann = client_for("ann")
    tid = task_id(ann.get("/next", follow_redirects=False))
    fields = form_fields(ann.get(f"/task/{tid}").text)
    status, read = post(app, f"/task/{tid}", filler(MAX_BODY // 2),
                        {"content-type": "multipart/form-data; boundary=x", "cookie": session_cookie(ann)})
    assert status == 415 and read == 0
    # The case: a file part sent as the `response` field (a 500 before).
    sent = ann.post(f"/task/{tid}", data=fields, files={"response": ("a.txt", b"file text")})
    assert sent.status_code == 415
    assert ann.post(f"/task/{tid}", data={**fields, "response": "typed"}, follow_redirects=False).status_code == 303


def test_huge_ids_in_urls_are_not_found(db, people, client_for):
    ann, admin = client_for("ann"), client_for("boss")
    assert ann.get("/task/99999999999999999999999").status_code == 404
    assert ann.get("/task/3000000000").status_code == 404  # past PostgreSQL's 32-bit ids
    token = csrf_of(admin, "/admin/users")
    for path in ("/admin/users/99999999999999999999999/status", "/admin/users/3000000000/password"):
        response = admin.post(path, data={"status": "approved", "password": "long enough pw", "csrf_token": token})
        assert response.status_code == 404, path


def test_bad_settings_in_the_admin_page_are_a_400(db, people, client_for):
    admin = client_for("boss")
    token = csrf_of(admin, "/admin")
    for value in ("²", "0", "-1", "101", "1e2", " 3", ""):  # "²" was a 500: str.isdigit() says yes, int() says no
        response = admin.post("/admin/settings", data={"overlap": value, "csrf_token": token})
        assert response.status_code == 400 and "overlap: a whole number from 1 to 100" in response.text, value
    for value in ("0", "²", "10081"):
        response = admin.post("/admin/settings", data={"lease_minutes": value, "csrf_token": token})
        assert response.status_code == 400 and "lease_minutes: a whole number from 1 to 10080" in response.text, value
    assert admin.post("/admin/settings", data={"csrf_token": token}).status_code == 400


def test_nul_characters_are_refused_with_a_400(db, people, client_for, tmp_path):
    """PostgreSQL cannot store NUL in text: they were 500s there."""
    add_prompts(db, tmp_path, ["p"])
    ann, admin = client_for("ann"), client_for("boss")
    tid = task_id(ann.get("/next", follow_redirects=False))
    fields = form_fields(ann.get(f"/task/{tid}").text)
    refused = ann.post(f"/task/{tid}", data={**fields, "response": "a\x00b"})
    assert refused.status_code == 400 and "NUL" in refused.text
    token = csrf_of(admin, "/admin/instructions")
    assert admin.post("/admin/instructions", data={"text": "x\x00", "csrf_token": token}).status_code == 400
    anonymous = client_for()
    response = anonymous.post("/login", data={"username": "ann\x00", "password": "x" * 8,
                                              "csrf_token": csrf_of(anonymous)})
    assert response.status_code == 401
