"""Accounts, sessions, CSRF and the cookie-signing secret.

Passwords are hashed with argon2id (argon2-cffi). The session is a signed cookie
(Starlette's SessionMiddleware, itsdangerous) holding only the user id, the user's
session version and the CSRF token; the user is re-read from the database on every
request, so disabling a labeler takes effect at once, and bumping the version
(logout, a password change or reset) ends every session of that account.
Every form POST carries the session's CSRF token.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Request
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from rlhf.label.db import Database
from rlhf.label.models import ROLES, STATUSES, User

log = logging.getLogger(__name__)
_hasher = PasswordHasher()
USERNAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # argon2 hashes any length; a cap keeps a login from hashing megabytes
MIN_SECRET = 32
# Verifying against this when the user does not exist keeps login time the same
# for unknown and known usernames (no user enumeration by timing).
_DUMMY_HASH = _hasher.hash("not-a-real-password")


class Refused(Exception):
    """The request is refused: `status` is the HTTP status to answer with, `message`
    what the person should read."""

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


@dataclass(frozen=True)
class LoggedIn:
    """Who just proved their password, and the session version to put in the cookie."""

    id: int
    username: str
    session_version: int


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"password: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise ValueError(f"password: at most {MAX_PASSWORD} characters")
    if "\x00" in password:
        raise ValueError("password: no NUL characters")


def create_user(session: Session, username: str, password: str, role: str = "labeler", status: str = "candidate") -> User:
    """Raises ValueError with a message for the person typing."""
    if not USERNAME.match(username):
        raise ValueError("username: 1-64 letters, digits, '_', '.' or '-' (it becomes the labeler_id of exports)")
    check_new_password(password)
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


def new_password_hash(password: str) -> str:
    """Check and hash a new password, before any transaction: argon2 is slow on purpose."""
    check_new_password(password)
    return hash_password(password)


def set_password(user: User, password_hash: str) -> None:
    """A new password (a change, or an admin's reset); every session of the user ends."""
    user.password_hash = password_hash
    user.session_version += 1


def authenticate(db: Database, username: str, password: str) -> LoggedIn | None:
    """The user if the password is right and the account enabled, else None.

    argon2 takes ~0.15 s on purpose, so it runs outside any transaction: inside the
    write transaction it would stall every labeler's submit on SQLite."""
    user = None
    if USERNAME.match(username):  # anything else names no one (and PostgreSQL refuses NUL bytes)
        with db.reading() as s:
            user = s.scalar(select(User).where(User.username == username))
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or user.status == "disabled":
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        rehashed = hash_password(password)  # before the transaction, like the check
        with db.transaction() as s:
            # Only if the hash is still the one we checked: a password change in between wins.
            s.execute(update(User).where(User.id == user.id, User.password_hash == user.password_hash)
                      .values(password_hash=rehashed))
    return LoggedIn(user.id, user.username, user.session_version)


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use (the login form needs one too)."""
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def checked_form(request: Request) -> FormData:
    """Dependency of every POST route: the parsed form, once its CSRF token matches.

    A request with no session is refused before its body is read; routes that need a
    login check it before this runs (their router's dependency), so a stranger's body
    is never parsed. The body's size and type were checked by pages.BodyLimit."""
    expected = request.session.get("csrf")
    if not expected:
        raise Refused(403, "The form's security token is missing or stale. Reload the page and try again.")
    form = await request.form(max_files=0, max_fields=1000, max_part_size=request.app.state.max_body)
    sent = form.get("csrf_token")
    if not isinstance(sent, str) or not hmac.compare_digest(sent, expected):
        raise Refused(403, "The form's security token is missing or stale. Reload the page and try again.")
    return form


def log_in(request: Request, user: LoggedIn) -> None:
    # A fresh session (and CSRF token) at login: nothing from before login carries over.
    request.session.clear()
    request.session["user_id"] = user.id
    request.session["sv"] = user.session_version
    csrf_token(request)


def log_out(db: Database, request: Request) -> None:
    """End this session and every other session of the account (a saved copy of the
    cookie stops working too)."""
    user_id, version = request.session.get("user_id"), request.session.get("sv")
    request.session.clear()
    if user_id is None:
        return
    with db.transaction() as s:
        s.execute(update(User).where(User.id == user_id, User.session_version == version)
                  .values(session_version=User.session_version + 1))


def current_user(request: Request) -> CurrentUser:
    """Dependency: the logged-in, enabled user, else a redirect to the login page."""
    user_id = request.session.get("user_id")
    if user_id is None:
        raise LoginRequired()
    with request.app.state.db.reading() as s:
        user = s.get(User, user_id)
        if user is None or user.status == "disabled" or request.session.get("sv") != user.session_version:
            request.session.clear()
            raise LoginRequired()
        return CurrentUser(user.id, user.username, user.role, user.status)


def require_admin(request: Request) -> CurrentUser:
    user = current_user(request)
    if not user.is_admin:
        raise Refused(403, "This page is for admins.")
    return user


def load_secret(path: Path | None) -> str:
    """The key that signs cookies: $RLHF_LABEL_SECRET, else the contents of `path`,
    made once with a random key (owner-only) so a restart logs no one out."""
    secret = os.environ.get("RLHF_LABEL_SECRET")
    where = "$RLHF_LABEL_SECRET"
    if not secret:
        if path is None:
            raise ValueError("set $RLHF_LABEL_SECRET or pass --secret-file: only a SQLite database has a folder "
                             "to keep the cookie-signing secret beside")
        secret, where = _secret_file(path), str(path)
    if len(secret) < MIN_SECRET:
        raise ValueError(f"{where}: the cookie-signing secret must be at least {MIN_SECRET} characters "
                         "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(48))')")
    return secret


def _secret_file(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written under a temporary name, then linked into place: a crash leaves no
        # empty secret behind, and of two servers starting at once the second reads the first's.
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, (secrets.token_urlsafe(48) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s is readable by other users (mode %o): anyone who reads it can forge an admin's "
                    "cookie. chmod 600 %s", path, mode, path)
    return path.read_text(encoding="utf-8").strip()
