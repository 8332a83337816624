"""The web app, wired: middleware, refusal pages, static files and the three routers
(labeler.public, labeler.router, admin.router). Pages live in pages.py."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from rlhf.label import admin, labeler, pages
from rlhf.label.auth import LoginRequired, Refused
from rlhf.label.db import Database
from rlhf.label.throttle import LoginGuard

SESSION_DAYS = 7


def create_app(db: Database, secret: str, secure_cookies: bool = True) -> FastAPI:
    """The app over an open (migrated) database. `secret` signs the cookies (see
    auth.load_secret); `secure_cookies` marks them Secure: right behind HTTPS, wrong
    on plain http (browsers drop them)."""
    app = FastAPI(title="rlhf label", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.db = db
    app.state.max_body = pages.MAX_BODY
    app.state.logins = LoginGuard(secret, secure_cookies)
    # Added last runs first: headers on every answer, then the body limit, before
    # anything else can read the request.
    app.add_middleware(
        SessionMiddleware, secret_key=secret, session_cookie="rlhf_label_session",
        max_age=SESSION_DAYS * 24 * 3600, same_site="lax", https_only=secure_cookies,
    )
    app.add_middleware(pages.BodyLimit, max_body=pages.MAX_BODY)
    app.add_middleware(pages.SecurityHeaders)
    app.add_exception_handler(LoginRequired, pages.login_page_redirect)
    app.add_exception_handler(Refused, pages.refused_page)
    app.add_exception_handler(pages.BodyTooLarge, pages.body_too_large)
    app.mount("/static", StaticFiles(directory=pages.HERE / "static"), name="static")
    for router in (labeler.public, labeler.router, admin.router):
        app.include_router(router)
    return app
