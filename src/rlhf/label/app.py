"""The web app: login, the labeler's pages (next task, task, history, instructions).

Admin pages live in admin.py. Pages are rendered on the server with Jinja2
(autoescape on: prompt and response text is untrusted and always shown escaped);
the only JavaScript is static/rank.js, which makes ranking draggable and
keyboard-operable, and a strict Content-Security-Policy forbids any inline script.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from starlette.datastructures import FormData
from starlette.middleware.sessions import SessionMiddleware

from rlhf.data import FLAGS
from rlhf.label import tasks
from rlhf.label.auth import AuthError, CurrentUser, LoginRequired, authenticate, checked_form, csrf_token, current_user, log_in
from rlhf.label.db import Database, get_setting, session_secret

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

templates = Jinja2Templates(env=Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True))


def render(request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
    context.setdefault("user", getattr(request.state, "user", None))
    context["csrf_token"] = csrf_token(request)
    context["flags"] = FLAGS
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def page_user(request: Request, user: CurrentUser = Depends(current_user)) -> CurrentUser:
    request.state.user = user  # so every page can show who is logged in
    return user


def instructions_text(db: Database) -> str:
    with db.reading() as s:
        return get_setting(s, "instructions", DEFAULT_INSTRUCTIONS)


def create_app(db: Database, secure_cookies: bool = True) -> FastAPI:
    """The app over an open (migrated) database. `secure_cookies` marks the session
    cookie Secure: right behind HTTPS, wrong on plain http (browsers drop it)."""
    app = FastAPI(title="rlhf label", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.db = db
    app.add_middleware(
        SessionMiddleware, secret_key=session_secret(db), session_cookie="rlhf_label_session",
        max_age=7 * 24 * 3600, same_site="lax", https_only=secure_cookies,
    )

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, _exc):
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)

    @app.exception_handler(AuthError)
    @app.exception_handler(tasks.TaskError)
    async def _refused(request: Request, exc):
        return render(request, "error.html", status_code=exc.status, message=exc.message)

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _add_routes(app, db)
    from rlhf.label.admin import router

    app.include_router(router)
    return app


def _safe_next(target: str | None) -> str:
    # Only same-site paths: "//evil.example" or "https://..." would be an open redirect.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _add_routes(app: FastAPI, db: Database) -> None:
    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    @app.get("/login")
    def login_page(request: Request, next: str = "/"):
        return render(request, "login.html", next=_safe_next(next))

    @app.post("/login")
    def login(request: Request, form: FormData = Depends(checked_form)):
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        with db.transaction() as s:
            user = authenticate(s, username, password)
            if user is not None:
                log_in(request, user)
        if user is None:
            return render(request, "login.html", status_code=401, error="Wrong username or password.",
                          username=username, next=_safe_next(form.get("next")))
        return RedirectResponse(_safe_next(form.get("next")), status_code=303)

    @app.post("/logout")
    def logout(request: Request, form: FormData = Depends(checked_form)):
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/")
    def home(request: Request, user: CurrentUser = Depends(page_user)):
        return render(request, "home.html", answered=tasks.answered(db, user))

    @app.get("/next")
    def next_task(request: Request, kind: str | None = None, user: CurrentUser = Depends(page_user)):
        if kind not in (None, "", "demonstration", "ranking"):
            raise tasks.TaskError(400, "kind: demonstration or ranking")
        assignment_id = tasks.next_assignment(db, user, kind or None)
        if assignment_id is None:
            return render(request, "no_tasks.html")
        return RedirectResponse(f"/task/{assignment_id}", status_code=303)

    @app.get("/task/{assignment_id}")
    def task_page(request: Request, assignment_id: int, user: CurrentUser = Depends(page_user)):
        view = tasks.load_task(db, assignment_id, user)
        return _task_response(request, view, _initial_values(view))

    @app.post("/task/{assignment_id}")
    def submit_task(request: Request, assignment_id: int, form: FormData = Depends(checked_form),
                    user: CurrentUser = Depends(page_user)):
        view = tasks.load_task(db, assignment_id, user)
        answer = tasks.parse_answer(view.kind, len(view.responses), form)
        if answer.errors:
            # Show the form again with everything the labeler entered: nothing typed is lost.
            return _task_response(request, view, _form_values(view, form), answer.errors, str(form.get("token", "")))
        tasks.submit(db, assignment_id, user, str(form.get("token", "")), answer)
        return RedirectResponse("/next", status_code=303)

    @app.post("/task/{assignment_id}/skip")
    def skip_task(assignment_id: int, form: FormData = Depends(checked_form), user: CurrentUser = Depends(page_user)):
        tasks.skip(db, assignment_id, user)
        return RedirectResponse("/next", status_code=303)

    @app.get("/history")
    def history(request: Request, user: CurrentUser = Depends(page_user)):
        return render(request, "history.html", rows=tasks.history(db, user))

    @app.get("/instructions")
    def instructions(request: Request, user: CurrentUser = Depends(page_user)):
        return render(request, "instructions.html", text=instructions_text(db))


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
    values = {f"rank_{i}": str(pos + 1) for pos, (i, _) in enumerate(view.responses)}
    return values


def _form_values(view: tasks.TaskView, form: FormData) -> dict:
    values = {"response": str(form.get("response", ""))}
    for i, _ in view.responses:
        values[f"rank_{i}"] = str(form.get(f"rank_{i}", ""))
        values[f"likert_{i}"] = str(form.get(f"likert_{i}", ""))
        values[f"flag_{i}"] = [str(v) for v in form.getlist(f"flag_{i}")]
    return values


def _task_response(request: Request, view: tasks.TaskView, values: dict, errors: dict | None = None,
                   token: str | None = None) -> HTMLResponse:
    name = "task_demonstration.html" if view.kind == "demonstration" else "task_ranking.html"
    return render(
        request, name, status_code=400 if errors else 200, task=view, values=values, errors=errors or {},
        # Keep the token of a refused form: its later, valid submit is the same submission.
        token=token or tasks.new_form_token(), k=len(view.responses),
    )
