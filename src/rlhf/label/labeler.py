"""The labeler's routes: log in and out, change the password, the next task, a task
page and its submit or skip, the history and the instructions.

`public` needs no login; every route of `router` needs one (its dependency runs
before anything reads the request body).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse, RedirectResponse
from starlette.datastructures import FormData

from rlhf.label import tasks
from rlhf.label.auth import (
    CurrentUser, Refused, authenticate, checked_form, log_in, log_out, new_password_hash, set_password,
)
from rlhf.label.models import User
from rlhf.label.pages import instructions_text, page_user, render

public = APIRouter()
router = APIRouter(dependencies=[Depends(page_user)])


def _db(request: Request):
    return request.app.state.db


def _safe_next(target) -> str:
    # Only same-site paths: "//evil.example" or "https://..." would be an open redirect.
    if isinstance(target, str) and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


@public.get("/healthz", response_class=PlainTextResponse)
def healthz() -> str:
    return "ok"


@public.get("/login")
def login_page(request: Request, next: str = "/"):
    return render(request, "login.html", next=_safe_next(next))


@public.post("/login")
def login(request: Request, form: FormData = Depends(checked_form)):
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    guard = request.app.state.logins
    keys = guard.keys(request, username)
    wait = guard.wait(keys)
    if wait:
        return render(request, "login.html", status_code=429, headers={"Retry-After": str(wait)},
                      error=f"Too many failed logins. Try again in {wait} seconds.", username=username,
                      next=_safe_next(form.get("next")))
    user = authenticate(_db(request), username, password)
    if user is None:
        guard.failed(request, keys, username)
        return render(request, "login.html", status_code=401, error="Wrong username or password.",
                      username=username, next=_safe_next(form.get("next")))
    log_in(request, user)
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    guard.succeeded(keys, response, username)
    return response


@router.post("/logout")
def logout(request: Request, form: FormData = Depends(checked_form)):
    log_out(_db(request), request)
    return RedirectResponse("/login", status_code=303)


@router.get("/password")
def password_page(request: Request):
    return render(request, "password.html")


@router.post("/password")
def change_password(request: Request, form: FormData = Depends(checked_form), user: CurrentUser = Depends(page_user)):
    """A new password ends every other session; this one is renewed."""
    new, again = str(form.get("new_password", "")), str(form.get("again", ""))
    guard = request.app.state.logins
    keys = guard.keys(request, user.username)
    if guard.wait(keys):  # a stolen session must not become a way around the login backoff
        raise Refused(429, "Too many failed logins. Try again later.")
    if authenticate(_db(request), user.username, str(form.get("password", ""))) is None:
        guard.failed(request, keys, user.username)
        return render(request, "password.html", status_code=400, error="Your current password is wrong.")
    if new != again:
        return render(request, "password.html", status_code=400, error="The two new passwords differ.")
    try:
        hashed = new_password_hash(new)
    except ValueError as e:
        return render(request, "password.html", status_code=400, error=str(e))
    with _db(request).transaction() as s:
        row = s.get(User, user.id)
        set_password(row, hashed)
        version = row.session_version
    request.session["sv"] = version
    return render(request, "password.html", done=True)


@router.get("/")
def home(request: Request, user: CurrentUser = Depends(page_user)):
    return render(request, "home.html", answered=tasks.answered(_db(request), user))


@router.get("/next")
def next_task(request: Request, kind: str | None = None, user: CurrentUser = Depends(page_user)):
    if kind not in (None, "", "demonstration", "ranking"):
        raise Refused(400, "kind: demonstration or ranking")
    assignment_id = tasks.next_assignment(_db(request), user, kind or None)
    if assignment_id is None:
        return render(request, "no_tasks.html")
    return RedirectResponse(f"/task/{assignment_id}", status_code=303)


@router.get("/task/{assignment_id}")
def task_page(request: Request, assignment_id: int, user: CurrentUser = Depends(page_user)):
    view = tasks.load_task(_db(request), assignment_id, user)
    return _task_response(request, view, _initial_values(view))


@router.post("/task/{assignment_id}")
def submit_task(request: Request, assignment_id: int, form: FormData = Depends(checked_form),
                user: CurrentUser = Depends(page_user)):
    db = _db(request)
    view = tasks.load_task(db, assignment_id, user)
    answer = tasks.parse_answer(view.kind, len(view.responses), form)
    token = str(form.get("token", ""))
    if answer.errors:
        # Show the form again with everything the labeler entered: nothing typed is lost.
        return _task_response(request, view, _form_values(view, form), answer.errors, token)
    try:
        tasks.submit(db, assignment_id, user, token, answer)
    except tasks.LeaseLost as e:
        # The lease ran out and someone else took the slot: keep what was typed on the page.
        return _task_response(request, tasks.load_task(db, assignment_id, user), _form_values(view, form),
                              {"lease": e.message}, token, status_code=409)
    return RedirectResponse("/next", status_code=303)


@router.post("/task/{assignment_id}/skip")
def skip_task(request: Request, assignment_id: int, form: FormData = Depends(checked_form),
              user: CurrentUser = Depends(page_user)):
    tasks.skip(_db(request), assignment_id, user)
    return RedirectResponse("/next", status_code=303)


@router.get("/history")
def history(request: Request, user: CurrentUser = Depends(page_user)):
    return render(request, "history.html", rows=tasks.history(_db(request), user))


@router.get("/instructions")
def instructions(request: Request):
    return render(request, "instructions.html", text=instructions_text(_db(request)))


def _initial_values(view: tasks.TaskView) -> dict:
    """Form values for a fresh page (ranks default to the shown order), or the stored answer."""
    if view.answer is not None:
        values = {"response": view.answer["response"] or ""}
        for g, group in enumerate(view.answer["ranking"] or []):
            for i in group:
                values[f"rank_{i}"] = str(g + 1)
        for i, score in enumerate(view.answer["likert"] or []):
            values[f"likert_{i}"] = str(score)
        for i, flags in enumerate(view.answer["flags"] or []):
            values[f"flag_{i}"] = [name for name, on in flags.items() if on]
        return values
    return {f"rank_{i}": str(pos + 1) for pos, (i, _) in enumerate(view.responses)}


def _form_values(view: tasks.TaskView, form: FormData) -> dict:
    values = {"response": str(form.get("response", ""))}
    for i, _ in view.responses:
        values[f"rank_{i}"] = str(form.get(f"rank_{i}", ""))
        values[f"likert_{i}"] = str(form.get(f"likert_{i}", ""))
        values[f"flag_{i}"] = [str(v) for v in form.getlist(f"flag_{i}")]
    return values


def _task_response(request: Request, view: tasks.TaskView, values: dict, errors: dict | None = None,
                   token: str | None = None, status_code: int | None = None):
    name = "task_demonstration.html" if view.kind == "demonstration" else "task_ranking.html"
    return render(
        request, name, status_code=status_code or (400 if errors else 200), task=view, values=values,
        errors=errors or {},
        # Keep the token of a refused form: its later, valid submit is the same submission.
        token=token or tasks.new_form_token(), k=len(view.responses),
    )
