"""Accounts, sessions and CSRF.

Passwords are hashed with argon2id (argon2-cffi). The session is a signed cookie
(Starlette's SessionMiddleware, itsdangerous) holding only the user id and the
CSRF token; the user is re-read from the database on every request, so disabling
a labeler takes effect at once. Every form POST carries the session's CSRF token.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from rlhf.label.models import ROLES, STATUSES, User

_hasher = PasswordHasher()
USERNAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MIN_PASSWORD = 8
# Verifying against this when the user does not exist keeps login time the same
# for unknown and known usernames (no user enumeration by timing).
_DUMMY_HASH = _hasher.hash("not-a-real-password")


class AuthError(Exception):
    """Refused: `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class LoginRequired(Exception):
    pass


@dataclass(frozen=True)
class CurrentUser:
    id: int
    username: str
    role: str
    status: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def labels_real_tasks(self) -> bool:
        return self.status == "approved" or self.is_admin


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def create_user(session: Session, username: str, password: str, role: str = "labeler", status: str = "candidate") -> User:
    """Raises ValueError with a message for the person typing."""
    if not USERNAME.match(username):
        raise ValueError("username: 1-64 letters, digits, '_', '.' or '-' (it becomes the labeler_id of exports)")
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"password: at least {MIN_PASSWORD} characters")
    if role not in ROLES:
        raise ValueError(f"role: one of {', '.join(ROLES)}")
    if status not in STATUSES:
        raise ValueError(f"status: one of {', '.join(STATUSES)}")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise ValueError(f"username: '{username}' is taken")
    user = User(username=username, password_hash=hash_password(password), role=role, status=status)
    session.add(user)
    try:
        session.flush()
    except IntegrityError:
        raise ValueError(f"username: '{username}' is taken") from None
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    user = session.scalar(select(User).where(User.username == username))
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or user.status == "disabled":
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use (the login form needs one too)."""
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def checked_form(request: Request) -> FormData:
    """Dependency of every POST route: the parsed form, once its CSRF token matches."""
    form = await request.form()
    sent = form.get("csrf_token")
    expected = request.session.get("csrf")
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent, expected):
        raise AuthError(403, "The form's security token is missing or stale. Reload the page and try again.")
    return form


def log_in(request: Request, user: User) -> None:
    # A fresh session (and CSRF token) at login: nothing from before login carries over.
    request.session.clear()
    request.session["user_id"] = user.id
    csrf_token(request)


def current_user(request: Request) -> CurrentUser:
    """Dependency: the logged-in, enabled user, else a redirect to the login page."""
    user_id = request.session.get("user_id")
    if user_id is None:
        raise LoginRequired()
    with request.app.state.db.reading() as s:
        user = s.get(User, user_id)
        if user is None or user.status == "disabled":
            request.session.clear()
            raise LoginRequired()
        return CurrentUser(user.id, user.username, user.role, user.status)


def require_admin(request: Request) -> CurrentUser:
    user = current_user(request)
    if not user.is_admin:
        raise AuthError(403, "This page is for admins.")
    return user
