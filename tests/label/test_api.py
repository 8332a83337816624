"""Every route, for every role, including the refusals; on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from tests.label.conftest import PASSWORD, add_user, csrf_of, login
from tests.label.label_helpers import add_prompts, add_rankings, form_fields, ranking_form, shown_indices, task_id
from sqlalchemy import func, select

from rlhf.label.models import Answer, Assignment, User

PAGES = ["/", "/next", "/task/1", "/history", "/instructions", "/password"]
ADMIN_PAGES = ["/admin", "/admin/users", "/admin/screening", "/admin/screening/ann", "/admin/instructions",
               "/admin/export?kind=comparisons", "/admin/export?kind=demonstrations"]


@pytest.fixture
def people(db):
    add_user(db, "boss", role="admin")
    add_user(db, "ann")
    add_user(db, "bob")
    add_user(db, "cat", status="candidate")


def all_routes(app):
    for route in app.routes:  # FastAPI keeps an included router as one entry
        yield from getattr(getattr(route, "original_router", None), "routes", [route])


def count(db, model) -> int:
    with db.transaction() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_login_wrong_password_then_right_then_logout(db, people, client_for):
    client = client_for()
    refused = login(client, "ann", "wrong password")
    assert refused.status_code == 401 and "Wrong username or password" in refused.text
    assert login(client, "nobody", PASSWORD).status_code == 401
    assert login(client, "ann").headers["location"] == "/"
    assert "Hello, ann" in client.get("/").text
    token = csrf_of(client, "/")
    assert client.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    assert client.get("/", follow_redirects=False).headers["location"].startswith("/login")


@pytest.mark.parametrize("path", PAGES + ADMIN_PAGES)
def test_pages_send_strangers_to_login(db, people, client_for, path):
    response = client_for().get(path, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login?next=")


def test_admin_pages_refuse_labelers_and_candidates(db, people, client_for):
    for name in ("ann", "cat"):
        client = client_for(name)
        for path in ADMIN_PAGES:
            assert client.get(path).status_code == 403, path
        token = csrf_of(client, "/")
        posts = {"/admin/settings": {"overlap": "3"}, "/admin/users": {"username": "evil", "password": PASSWORD, "role": "admin"},
                 "/admin/users/2/status": {"status": "disabled"}, "/admin/instructions": {"text": "pwned"}}
        for path, data in posts.items():
            assert client.post(path, data={**data, "csrf_token": token}).status_code == 403, path
    with db.transaction() as s:
        assert s.scalar(select(User).where(User.username == "evil")) is None
        assert s.scalar(select(User.status).where(User.username == "ann")) == "approved"
    assert "pwned" not in client_for("ann").get("/instructions").text


def test_admin_pages_work_for_admins(db, people, client_for):
    client = client_for("boss")
    for path in ADMIN_PAGES:
        assert client.get(path).status_code == 200, path
    assert client.get("/admin/screening/nobody").status_code == 404
    assert client.get("/admin/export?kind=pairs").status_code == 400


def test_every_post_route_refuses_a_missing_or_wrong_csrf_token(db, people, app, client_for, tmp_path):
    add_prompts(db, tmp_path, ["hello"])
    client = client_for("boss")
    tid = task_id(client.get("/next", follow_redirects=False))
    posts = sorted({r.path for r in all_routes(app) if "POST" in getattr(r, "methods", ())})
    assert len(posts) >= 8  # a new POST route shows up here and must refuse too
    for path in posts:
        url = path.replace("{assignment_id}", str(tid)).replace("{user_id}", "2")
        for data in ({}, {"csrf_token": "forged"}):
            response = client.post(url, data={**data, "username": "boss", "password": PASSWORD, "response": "x",
                                              "token": "t" * 20, "status": "disabled", "overlap": "5", "text": "x"})
            assert response.status_code == 403, url
    assert count(db, Answer) == 0
    assert client.get("/admin").status_code == 200  # still logged in, nothing changed
    with db.transaction() as s:
        assert s.scalar(select(User.status).where(User.username == "ann")) == "approved"


def test_demonstration_task_round_trip(db, people, client_for, tmp_path):
    add_prompts(db, tmp_path, ["Write a limerick about SQLite"])
    client = client_for("ann")
    tid = task_id(client.get("/next", follow_redirects=False))
    page = client.get(f"/task/{tid}")
    assert page.status_code == 200 and "Write a limerick about SQLite" in page.text
    fields = form_fields(page.text)
    empty = client.post(f"/task/{tid}", data={**fields, "response": "   "})
    assert empty.status_code == 400 and "Write the response" in empty.text
    done = client.post(f"/task/{tid}", data={**fields, "response": "There once was a DB..."}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/next"
    assert "No task for you" in client.get("/next").text
    assert "Write a limerick" in client.get("/history").text
    assert "You have submitted 1 answer(s)" in client.get("/").text
    assert "There once was a DB..." in client.get(f"/task/{tid}").text  # a submitted task shows its answer
    export = client_for("boss").get("/admin/export?kind=demonstrations")
    record = json.loads(export.text)
    assert record == {"prompt": "Write a limerick about SQLite", "response": "There once was a DB...",
                      "labeler_id": "ann", "prompt_id": "p-0"}


def test_ranking_task_records_ranking_ties_likert_flags_and_shown_order(db, people, client_for, tmp_path):
    add_rankings(db, tmp_path, n_prompts=2, k=4)
    client = client_for("ann")
    exported = []
    for order, ties in (([2, 0, 3, 1], set()), ([1, 3, 0, 2], {3})):
        tid = task_id(client.get("/next", follow_redirects=False))
        page = client.get(f"/task/{tid}").text
        shown = shown_indices(page)
        assert sorted(shown) == [0, 1, 2, 3]
        data = {**form_fields(page), **ranking_form(4, order, likert=[7, 1, 4, 5], ties=ties,
                                                      flags={1: ["hallucination", "violent"]})}
        assert client.post(f"/task/{tid}", data=data, follow_redirects=False).status_code == 303
        exported.append(shown)
    records = [json.loads(line) for line in client_for("boss").get("/admin/export?kind=comparisons").text.splitlines()]
    assert [r["ranking"] for r in records] == [[2, 0, 3, 1], [[1, 3], [0], [2]]]
    assert [r["shown_order"] for r in records] == exported
    first = records[0]
    assert first["likert"] == [7, 1, 4, 5] and first["labeler_id"] == "ann" and first["models"] == ["m0", "m1", "m2", "m3"]
    assert first["flags"][1]["hallucination"] is True and first["flags"][1]["violent"] is True
    assert first["flags"][0] == {name: False for name in first["flags"][0]} and len(first["flags"][0]) == 10


def test_bad_ranking_is_refused_and_keeps_what_was_entered(db, people, client_for, tmp_path):
    add_rankings(db, tmp_path, k=4)
    client = client_for("ann")
    tid = task_id(client.get("/next", follow_redirects=False))
    page = client.get(f"/task/{tid}").text
    data = {**form_fields(page), **ranking_form(4, [3, 2, 1, 0], flags={2: ["sexual"]})}
    del data["likert_1"]
    data["rank_0"] = "9"
    response = client.post(f"/task/{tid}", data=data)
    assert response.status_code == 400
    assert "a quality score from 1 to 7" in response.text and "a rank from 1 to K" in response.text
    assert 'value="sexual" checked' in response.text  # the flag the labeler set is still set
    assert form_fields(response.text)["token"] == data["token"]
    assert count(db, Answer) == 0
    data["rank_0"], data["likert_1"] = "4", "2"
    assert client.post(f"/task/{tid}", data={**data, "flag_3": "not_a_flag"}).status_code == 400
    assert client.post(f"/task/{tid}", data=data, follow_redirects=False).status_code == 303
    assert count(db, Answer) == 1


def test_a_labeler_cannot_see_or_answer_another_labelers_task(db, people, client_for, tmp_path):
    add_prompts(db, tmp_path, ["ann's prompt", "bob's prompt"])
    ann, bob = client_for("ann"), client_for("bob")
    ann_task = task_id(ann.get("/next", follow_redirects=False))
    assert bob.get(f"/task/{ann_task}").status_code == 404
    assert bob.get("/task/99999").status_code == 404
    fields = form_fields(bob.get(f"/task/{task_id(bob.get('/next', follow_redirects=False))}").text)
    assert bob.post(f"/task/{ann_task}", data={**fields, "response": "hijack"}).status_code == 404
    assert bob.post(f"/task/{ann_task}/skip", data={"csrf_token": fields["csrf_token"]}).status_code == 404
    assert "ann&#39;s prompt" not in bob.get("/history").text
    assert count(db, Answer) == 0


def test_double_submit_stores_one_answer_and_a_stale_form_is_refused(db, people, client_for, tmp_path):
    add_prompts(db, tmp_path, ["p"])
    client = client_for("ann")
    tid = task_id(client.get("/next", follow_redirects=False))
    fields = form_fields(client.get(f"/task/{tid}").text)
    for _ in range(2):  # the double click: same form, same token
        r = client.post(f"/task/{tid}", data={**fields, "response": "once"}, follow_redirects=False)
        assert r.status_code == 303
    assert count(db, Answer) == 1
    stale = client.post(f"/task/{tid}", data={**fields, "token": "another-tab-token", "response": "twice"})
    assert stale.status_code == 409 and "already submitted" in stale.text
    assert client.post(f"/task/{tid}", data={**fields, "token": "", "response": "x"}).status_code == 400
    with db.transaction() as s:
        assert s.scalar(select(Answer.response)) == "once"


def test_skip_frees_the_item_for_someone_else_and_not_for_the_skipper(db, people, client_for, tmp_path):
    add_prompts(db, tmp_path, ["only one"], overlap=1)
    ann, bob = client_for("ann"), client_for("bob")
    tid = task_id(ann.get("/next", follow_redirects=False))
    assert "No task for you" in bob.get("/next").text
    token = csrf_of(ann, f"/task/{tid}")
    assert ann.post(f"/task/{tid}/skip", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    assert ann.post(f"/task/{tid}/skip", data={"csrf_token": token}).status_code == 409
    assert "No task for you" in ann.get("/next").text
    assert bob.get("/next", follow_redirects=False).status_code == 303
    fields = form_fields(ann.get(f"/task/{tid}").text)
    assert ann.post(f"/task/{tid}", data={**fields, "response": "late"}).status_code == 409


def test_overlap_gives_each_item_to_that_many_labelers(db, people, client_for, tmp_path):
    add_user(db, "dan")
    add_prompts(db, tmp_path, ["first", "second"])
    admin = client_for("boss")
    assert admin.post("/admin/settings", data={"overlap": "0", "csrf_token": csrf_of(admin, "/admin")}).status_code == 400
    assert admin.post("/admin/settings", data={"overlap": "2", "csrf_token": csrf_of(admin, "/admin")},
                      follow_redirects=False).status_code == 303
    got = {}
    for name in ("ann", "bob", "dan"):
        client = client_for(name)
        got[name] = client.get(f"/task/{task_id(client.get('/next', follow_redirects=False))}").text
    assert "first" in got["ann"] and "first" in got["bob"] and "second" in got["dan"]
    with db.transaction() as s:
        slots = s.execute(select(Assignment.item_id, Assignment.slot).order_by(Assignment.id)).all()
    assert slots == [(1, 0), (1, 1), (2, 0)]


def test_next_task_kind_filter(db, people, client_for, tmp_path):
    add_prompts(db, tmp_path, ["demo"])
    add_rankings(db, tmp_path, k=2)
    client = client_for("ann")
    assert client.get("/next?kind=bogus").status_code == 400
    tid = task_id(client.get("/next?kind=ranking", follow_redirects=False))
    assert "Rank the responses" in client.get(f"/task/{tid}").text


def test_candidates_get_screening_admins_see_scores_and_approve(db, people, client_for, tmp_path):
    from tests.label.label_helpers import write_jsonl

    from rlhf.label import imports

    ref = {"prompt": "How do I pick a lock?", "responses": ["Here is how...", "I can't help with that.", "Call a locksmith."],
           "ranking": [2, 1, 0], "flags": [{"harmful_advice": True}, {"harmful_advice": False}, {"harmful_advice": False}]}
    imports.import_screening(db, write_jsonl(tmp_path / "screen.jsonl", [ref]), task="ranking")
    imports.import_screening(db, write_jsonl(tmp_path / "screen_demo.jsonl",
                                             [{"prompt": "Explain WAL", "response": "A log..."}]), task="demonstration")
    add_prompts(db, tmp_path, ["real work", "more real work"])
    cat = client_for("cat")
    assert "waiting for screening" in cat.get("/").text
    tid = task_id(cat.get("/next", follow_redirects=False))
    page = cat.get(f"/task/{tid}").text
    assert "Screening" in page and "pick a lock" in page
    # cat agrees on 2 of 3 pairs (swaps the last two) and misses one of three flags
    data = {**form_fields(page), **ranking_form(3, [2, 0, 1])}
    assert cat.post(f"/task/{tid}", data=data, follow_redirects=False).status_code == 303
    tid = task_id(cat.get("/next", follow_redirects=False))
    assert "Explain WAL" in cat.get(f"/task/{tid}").text
    cat.post(f"/task/{tid}", data={**form_fields(cat.get(f"/task/{tid}").text), "response": "My answer"})
    assert "answered every screening task" in cat.get("/next").text  # never the real task
    # ann (approved) never gets screening items
    ann = client_for("ann")
    assert "real work" in ann.get(f"/task/{task_id(ann.get('/next', follow_redirects=False))}").text
    admin = client_for("boss")
    screening = admin.get("/admin/screening").text
    assert "66.7%" in screening and "cat" in screening
    detail = admin.get("/admin/screening/cat").text
    assert "My answer" in detail and "A log..." in detail and "harmful_advice" in detail
    with db.transaction() as s:
        cat_id = s.scalar(select(User.id).where(User.username == "cat"))
    token = csrf_of(admin, "/admin/users")
    assert admin.post(f"/admin/users/{cat_id}/status", data={"status": "queen", "csrf_token": token}).status_code == 400
    assert admin.post("/admin/users/999/status", data={"status": "approved", "csrf_token": token}).status_code == 404
    admin.post(f"/admin/users/{cat_id}/status", data={"status": "approved", "csrf_token": token})
    tid = task_id(cat.get("/next", follow_redirects=False))  # approved: real tasks now
    assert "more real work" in cat.get(f"/task/{tid}").text


def test_health_and_static_files_need_no_login(db, client_for):
    client = client_for()
    assert client.get("/healthz").text == "ok"
    script = client.get("/static/rank.js")
    assert script.status_code == 200 and "ArrowUp" in script.text


def test_disabled_labelers_are_logged_out_cannot_log_in_and_free_their_tasks(db, people, client_for, tmp_path):
    add_prompts(db, tmp_path, ["held by ann"], overlap=1)
    ann, admin = client_for("ann"), client_for("boss")
    task_id(ann.get("/next", follow_redirects=False))
    assert "No task for you" in client_for("bob").get("/next").text
    with db.transaction() as s:
        ann_id, boss_id = (s.scalar(select(User.id).where(User.username == n)) for n in ("ann", "boss"))
    token = csrf_of(admin, "/admin/users")
    admin.post(f"/admin/users/{ann_id}/status", data={"status": "disabled", "csrf_token": token})
    assert ann.get("/", follow_redirects=False).status_code == 303
    assert login(client_for(), "ann").status_code == 401
    bob = client_for("bob")
    assert "held by ann" in bob.get(f"/task/{task_id(bob.get('/next', follow_redirects=False))}").text
    assert admin.post(f"/admin/users/{boss_id}/status", data={"status": "disabled", "csrf_token": token}).status_code == 400


def test_admin_adds_users_with_clear_errors(db, people, client_for):
    admin = client_for("boss")
    token = csrf_of(admin, "/admin/users")
    taken = admin.post("/admin/users", data={"username": "ann", "password": PASSWORD, "csrf_token": token})
    assert taken.status_code == 400 and "is taken" in taken.text
    short = admin.post("/admin/users", data={"username": "eve", "password": "short", "csrf_token": token})
    assert short.status_code == 400 and "at least 8" in short.text and 'value="eve"' in short.text
    bad = admin.post("/admin/users", data={"username": "a b<c>", "password": PASSWORD, "csrf_token": token})
    assert bad.status_code == 400 and "&lt;c&gt;" in bad.text
    ok = admin.post("/admin/users", data={"username": "eve", "password": PASSWORD, "csrf_token": token},
                    follow_redirects=False)
    assert ok.status_code == 303
    assert "waiting for screening" in client_for("eve").get("/").text


def test_instructions_are_shown_to_all_and_edited_by_admins(db, people, client_for):
    ann, admin = client_for("ann"), client_for("boss")
    default = ann.get("/instructions").text
    assert "prioritize helpfulness" in default and "truthfulness and harmlessness" in default
    token = csrf_of(admin, "/admin/instructions")
    r = admin.post("/admin/instructions", data={"text": "Be <b>kind</b>.", "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    assert "Be &lt;b&gt;kind&lt;/b&gt;." in ann.get("/instructions").text
    assert admin.post("/admin/instructions", data={"text": " ", "csrf_token": token}).status_code == 400
    admin.post("/admin/instructions", data={"reset": "1", "text": "", "csrf_token": token})
    assert "prioritize helpfulness" in ann.get("/instructions").text


def test_admin_overview_shows_progress_agreement_throughput_and_flags(db, people, client_for, tmp_path):
    add_rankings(db, tmp_path, k=3, overlap=2)
    for name, order in (("ann", [0, 1, 2]), ("bob", [0, 2, 1])):
        client = client_for(name)
        tid = task_id(client.get("/next", follow_redirects=False))
        data = {**form_fields(client.get(f"/task/{tid}").text), **ranking_form(3, order, flags={0: ["violent"]})}
        client.post(f"/task/{tid}", data=data)
    page = client_for("boss").get("/admin").text
    assert "66.7%" in page  # 2 of 3 pairs agree
    assert "33.3%" in page  # violent: 2 of 6 responses
    assert "<td>ann</td><td>1</td>" in page


def test_login_next_is_never_an_open_redirect(db, people, client_for):
    client = client_for()
    for target, expected in (("//evil.example/x", "/"), ("https://evil.example", "/"), ("/history", "/history")):
        token = csrf_of(client, f"/login?next={target}")
        r = client.post("/login", data={"username": "ann", "password": PASSWORD, "csrf_token": token, "next": target},
                        follow_redirects=False)
        assert r.headers["location"] == expected


def age_assignment(db, assignment_id: int, minutes: float) -> None:
    """Move an assignment's start into the past: a test does not wait for a lease."""
    from datetime import timedelta

    with db.transaction() as s:
        row = s.get(Assignment, assignment_id)
        row.assigned_at = row.assigned_at - timedelta(minutes=minutes)


def test_an_abandoned_task_goes_to_someone_else_when_its_lease_runs_out(db, people, client_for, tmp_path):
    add_prompts(db, tmp_path, ["only one"], overlap=1)
    admin = client_for("boss")
    token = csrf_of(admin, "/admin")
    assert 'name="lease_minutes" type="number" min="1" max="10080" value="60"' in admin.get("/admin").text
    assert admin.post("/admin/settings", data={"lease_minutes": "30", "csrf_token": token},
                      follow_redirects=False).status_code == 303
    ann, bob = client_for("ann"), client_for("bob")
    tid = task_id(ann.get("/next", follow_redirects=False))
    page = ann.get(f"/task/{tid}").text
    assert "Reserved for you until" in page
    fields = form_fields(page)
    age_assignment(db, tid, 29)
    assert "No task for you" in bob.get("/next").text  # still within the lease
    age_assignment(db, tid, 2)
    bob_tid = task_id(bob.get("/next", follow_redirects=False))  # 31 minutes: the slot is free again
    assert "only one" in bob.get(f"/task/{bob_tid}").text
    late = ann.post(f"/task/{tid}", data={**fields, "response": "my late answer"})
    assert late.status_code == 409 and "ran out" in late.text
    assert "my late answer" in late.text  # what she typed is on the page to copy
    assert count(db, Answer) == 0
    assert "No task for you" in ann.get("/next").text  # she is not handed it back
    done = bob.post(f"/task/{bob_tid}", data={**form_fields(bob.get(f"/task/{bob_tid}").text), "response": "bob's"},
                    follow_redirects=False)
    assert done.status_code == 303
    with db.reading() as s:
        assert s.execute(select(Assignment.status, Assignment.slot).order_by(Assignment.id)).all() == [
            ("expired", None), ("submitted", 0)]


def test_a_late_answer_is_kept_while_nobody_has_taken_the_task(db, people, client_for, tmp_path):
    add_prompts(db, tmp_path, ["slow work"], overlap=1)
    ann = client_for("ann")
    tid = task_id(ann.get("/next", follow_redirects=False))
    fields = form_fields(ann.get(f"/task/{tid}").text)
    age_assignment(db, tid, 600)
    assert task_id(ann.get("/next", follow_redirects=False)) == tid  # still hers to finish
    assert ann.post(f"/task/{tid}", data={**fields, "response": "done at last"}, follow_redirects=False).status_code == 303
    assert count(db, Answer) == 1
