"""What every page and request goes through: templates, the security headers, the
body limit, the refusal pages, and the dependencies that put the user on a page.

Pages are rendered on the server with Jinja2 (autoescape on: prompt and response
text is untrusted and always shown escaped); the only JavaScript is
static/rank.js, and a strict Content-Security-Policy forbids any inline script.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rlhf.data import FLAGS
from rlhf.label.auth import CurrentUser, LoginRequired, Refused, csrf_token, current_user, require_admin
from rlhf.label.db import Database, get_setting

HERE = Path(__file__).parent
DEFAULT_INSTRUCTIONS = (HERE / "default_instructions.md").read_text(encoding="utf-8")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
# Django's default (DATA_UPLOAD_MAX_MEMORY_SIZE). The largest honest form is the
# instructions: 200,000 characters, up to 12 bytes each once URL-encoded.
MAX_BODY = 2_621_440
FORM_TYPE = "application/x-www-form-urlencoded"

templates = Jinja2Templates(env=Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True))


def render(request: Request, name: str, status_code: int = 200, headers: dict | None = None, **context) -> HTMLResponse:
    context.setdefault("user", getattr(request.state, "user", None))
    context["csrf_token"] = csrf_token(request)
    context["flags"] = FLAGS
    return templates.TemplateResponse(request, name, context, status_code=status_code, headers=headers)


def page_user(request: Request, user: CurrentUser = Depends(current_user)) -> CurrentUser:
    request.state.user = user  # so every page can show who is logged in
    return user


def admin_user(request: Request, user: CurrentUser = Depends(require_admin)) -> CurrentUser:
    request.state.user = user
    return user


def instructions_text(db: Database) -> str:
    with db.reading() as s:
        return get_setting(s, "instructions", DEFAULT_INSTRUCTIONS)


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response, the body limit's refusals included.
    Plain ASGI: Starlette's BaseHTTPMiddleware would read the body in a task group
    of its own, where BodyLimit's BodyTooLarge could not reach the 413 page."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    headers.setdefault(key, value)
            await send(message)

        await self.app(scope, receive, with_headers)


async def refused_page(request: Request, exc: Refused) -> HTMLResponse:
    return render(request, "error.html", status_code=exc.status, message=exc.message)


async def login_page_redirect(request: Request, _exc: LoginRequired) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)


class BodyTooLarge(Exception):
    pass


async def body_too_large(request: Request, _exc: BodyTooLarge) -> PlainTextResponse:
    return PlainTextResponse(f"Request body over {MAX_BODY} bytes.", status_code=413)


class BodyLimit:
    """Refuses, before anything reads it, a body over `max_body` bytes (413) and a
    POST that is not a URL-encoded form (415: no multipart, so no file is ever
    spooled to disk). A chunked body with no length is counted as it streams in,
    and reading past the limit raises BodyTooLarge (a 413 page)."""

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY):
        self.app, self.max_body = app, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.lower(): v for k, v in scope["headers"] if k.lower() in (b"content-length", b"content-type")}
        length = headers.get(b"content-length", b"").decode("latin-1")
        if length and (not length.isdigit() or int(length) > self.max_body):
            return await _plain(send, 413, f"Request body over {self.max_body} bytes.")
        kind = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if scope["method"] == "POST" and length != "0" and kind != FORM_TYPE:
            return await _plain(send, 415, f"Forms only: Content-Type must be {FORM_TYPE}.")
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                raise BodyTooLarge()
            return message

        await self.app(scope, counted, send)


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
