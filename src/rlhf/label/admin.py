"""Admin pages: overview (progress, agreement, throughput, flag rates), users and
their approval, screening results, the instructions, the overlap setting, export.
Every route depends on `require_admin`: a labeler gets 403, a stranger the login page."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from starlette.datastructures import FormData

from rlhf.label import stats, tasks
from rlhf.label.app import DEFAULT_INSTRUCTIONS, instructions_text, render
from rlhf.label.auth import AuthError, CurrentUser, checked_form, create_user, require_admin
from rlhf.label.db import set_setting
from rlhf.label.export import KINDS, export_records
from rlhf.label.models import STATUSES, Answer, Assignment, Item, User

router = APIRouter(prefix="/admin")
MAX_INSTRUCTIONS = 200_000


def admin_user(request: Request, user: CurrentUser = Depends(require_admin)) -> CurrentUser:
    request.state.user = user
    return user


def _db(request: Request):
    return request.app.state.db


@router.get("")
def overview(request: Request, user: CurrentUser = Depends(admin_user)):
    return render(request, "admin.html", stats=stats.collect(_db(request)), export_kinds=list(KINDS))


@router.post("/settings")
def settings(request: Request, form: FormData = Depends(checked_form), user: CurrentUser = Depends(admin_user)):
    raw = str(form.get("overlap", ""))
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise AuthError(400, "overlap: a whole number from 1 to 100 (labelers per item)")
    with _db(request).transaction() as s:
        set_setting(s, "overlap", raw)
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
        raise AuthError(400, f"status: one of {', '.join(STATUSES)}")
    if user_id == user.id and status == "disabled":
        raise AuthError(400, "You cannot disable your own account.")
    with _db(request).reading() as s:
        target = s.get(User, user_id)
        if target is None:
            raise AuthError(404, "No such user.")
        target.status = status
        if status != "approved":
            tasks.release_open(s, target.id)
    return RedirectResponse("/admin/users", status_code=303)


@router.get("/screening")
def screening(request: Request, user: CurrentUser = Depends(admin_user)):
    result = stats.collect(_db(request))
    statuses = {u.username: u for u in _users(request)}
    return render(request, "admin_screening.html", scores=result["screening"], users=statuses)


@router.get("/screening/{username}")
def screening_detail(request: Request, username: str, user: CurrentUser = Depends(admin_user)):
    """A candidate's screening answers beside the reference answers."""
    with _db(request).transaction() as s:
        candidate = s.scalar(select(User).where(User.username == username))
        if candidate is None:
            raise AuthError(404, "No such user.")
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
        raise AuthError(400, f"The instructions must be 1 to {MAX_INSTRUCTIONS} characters.")
    with _db(request).transaction() as s:
        set_setting(s, "instructions", text)
    return RedirectResponse("/instructions", status_code=303)


@router.get("/export")
def export(request: Request, kind: str = "comparisons", exclude: str = "", user: CurrentUser = Depends(admin_user)):
    """The same records as `rlhf label export`, as a JSONL download."""
    if kind not in KINDS:
        raise AuthError(400, f"kind: one of {', '.join(KINDS)}")
    excluded = {x.strip() for x in exclude.split(",") if x.strip()}
    records, _ = export_records(_db(request), kind, exclude=excluded)
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return Response(body, media_type="application/x-ndjson",
                    headers={"Content-Disposition": f'attachment; filename="{kind}.jsonl"'})
