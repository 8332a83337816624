"""Admin pages: overview (progress, agreement, throughput, flag rates), users (add,
approve, disable, reset a password), screening results, the instructions, the
settings (overlap, lease), export. The router depends on `admin_user`, which runs
before any form is read: a labeler gets 403, a stranger the login page."""

from __future__ import annotations

import json
import logging

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from starlette.datastructures import FormData

from rlhf.label import stats, tasks
from rlhf.label.auth import (
    CurrentUser, LoggedIn, Refused, checked_form, create_user, log_in, new_password_hash, set_password,
)
from rlhf.label.db import SETTINGS, parse_setting, set_setting, setting
from rlhf.label.export import KINDS, export_records
from rlhf.label.models import MAX_ID, STATUSES, Answer, Assignment, Item, User
from rlhf.label.pages import DEFAULT_INSTRUCTIONS, admin_user, instructions_text, render

router = APIRouter(prefix="/admin", dependencies=[Depends(admin_user)])
log = logging.getLogger(__name__)
MAX_INSTRUCTIONS = 200_000


def _db(request: Request):
    return request.app.state.db


def _user_row(session, user_id: int) -> User:
    target = session.get(User, user_id) if 0 < user_id <= MAX_ID else None
    if target is None:
        raise Refused(404, "No such user.")
    return target


@router.get("")
def overview(request: Request, user: CurrentUser = Depends(admin_user)):
    with _db(request).reading() as s:
        lease = setting(s, "lease_minutes")
    return render(request, "admin.html", stats=stats.collect(_db(request)), export_kinds=list(KINDS), lease=lease)


@router.post("/settings")
def settings(request: Request, form: FormData = Depends(checked_form), user: CurrentUser = Depends(admin_user)):
    """Each setting in the form is checked, then all are saved together (or none)."""
    values = {}
    for name in SETTINGS:
        if name in form:
            try:
                values[name] = parse_setting(name, str(form.get(name)))
            except ValueError as e:
                raise Refused(400, str(e)) from None
    if not values:
        raise Refused(400, f"settings: send one of {', '.join(SETTINGS)}")
    with _db(request).transaction() as s:
        for name, value in values.items():
            set_setting(s, name, str(value))
    return RedirectResponse("/admin", status_code=303)


def _users(request: Request) -> list[User]:
    with _db(request).reading() as s:
        return list(s.scalars(select(User).order_by(User.id)))


@router.get("/users")
def users(request: Request, user: CurrentUser = Depends(admin_user)):
    return render(request, "admin_users.html", users=_users(request), statuses=STATUSES)


@router.post("/users")
def add_user(request: Request, form: FormData = Depends(checked_form), user: CurrentUser = Depends(admin_user)):
    username, role = str(form.get("username", "")).strip(), str(form.get("role", "labeler"))
    status = "approved" if role == "admin" or form.get("approved") else "candidate"
    try:
        with _db(request).transaction() as s:
            create_user(s, username, str(form.get("password", "")), role=role, status=status)
    except ValueError as e:
        return render(request, "admin_users.html", status_code=400, users=_users(request), statuses=STATUSES,
                      error=str(e), username=username)
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/users/{user_id}/status")
def set_status(request: Request, user_id: int, form: FormData = Depends(checked_form),
               user: CurrentUser = Depends(admin_user)):
    status = str(form.get("status", ""))
    if status not in STATUSES:
        raise Refused(400, f"status: one of {', '.join(STATUSES)}")
    if user_id == user.id and status == "disabled":
        raise Refused(400, "You cannot disable your own account.")
    with _db(request).transaction() as s:
        target = _user_row(s, user_id)
        target.status = status
        if status != "approved":
            tasks.release_open(s, target.id)
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/users/{user_id}/password")
def reset_password(request: Request, user_id: int, form: FormData = Depends(checked_form),
                   user: CurrentUser = Depends(admin_user)):
    """A new password for someone who forgot theirs: their sessions end and their
    login lock is lifted. Tell them the password another way."""
    try:
        hashed = new_password_hash(str(form.get("password", "")))
    except ValueError as e:
        raise Refused(400, str(e)) from None
    with _db(request).transaction() as s:
        target = _user_row(s, user_id)
        set_password(target, hashed)
        name, version = target.username, target.session_version
    request.app.state.logins.reset_user(name)
    log.warning("admin %r reset the password of %r", user.username, name)
    if user_id == user.id:  # one's own reset must not log one out of this page
        log_in(request, LoggedIn(user.id, name, version))
    return RedirectResponse("/admin/users", status_code=303)


@router.get("/screening")
def screening(request: Request, user: CurrentUser = Depends(admin_user)):
    result = stats.collect(_db(request))
    statuses = {u.username: u for u in _users(request)}
    return render(request, "admin_screening.html", scores=result["screening"], users=statuses)


@router.get("/screening/{username}")
def screening_detail(request: Request, username: str, user: CurrentUser = Depends(admin_user)):
    """A candidate's screening answers beside the reference answers."""
    with _db(request).reading() as s:
        candidate = s.scalar(select(User).where(User.username == username))
        if candidate is None:
            raise Refused(404, "No such user.")
        rows = s.execute(
            select(Item, Answer)
            .join(Assignment, Assignment.item_id == Item.id)
            .join(Answer, Answer.assignment_id == Assignment.id)
            .where(Assignment.user_id == candidate.id, Item.screening.is_(True))
            .order_by(Answer.id)
        ).all()
    return render(request, "admin_screening_detail.html", candidate=candidate, rows=rows)


@router.get("/instructions")
def edit_instructions(request: Request, user: CurrentUser = Depends(admin_user)):
    return render(request, "admin_instructions.html", text=instructions_text(_db(request)))


@router.post("/instructions")
def save_instructions(request: Request, form: FormData = Depends(checked_form), user: CurrentUser = Depends(admin_user)):
    text = str(form.get("text", ""))
    if form.get("reset"):
        text = DEFAULT_INSTRUCTIONS
    if not text.strip() or len(text) > MAX_INSTRUCTIONS:
        raise Refused(400, f"The instructions must be 1 to {MAX_INSTRUCTIONS} characters.")
    if "\x00" in text:
        raise Refused(400, "The instructions hold a NUL character, which cannot be stored.")
    with _db(request).transaction() as s:
        set_setting(s, "instructions", text)
    return RedirectResponse("/instructions", status_code=303)


@router.get("/export")
def export(request: Request, kind: str = "comparisons", exclude: str = "", user: CurrentUser = Depends(admin_user)):
    """The same records as `rlhf label export`, as a JSONL download."""
    if kind not in KINDS:
        raise Refused(400, f"kind: one of {', '.join(KINDS)}")
    excluded = {x.strip() for x in exclude.split(",") if x.strip()}
    records, _ = export_records(_db(request), kind, exclude=excluded)
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return Response(body, media_type="application/x-ndjson",
                    headers={"Content-Disposition": f'attachment; filename="{kind}.jsonl"'})
