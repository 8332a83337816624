"""Untrusted text is shown escaped, cookies are signed and locked down, passwords are argon2id."""

from __future__ import annotations

import pytest
from tests.label.conftest import add_user, csrf_of
from tests.label.label_helpers import add_rankings, form_fields, ranking_form, task_id, write_jsonl

from rlhf.label import imports

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
