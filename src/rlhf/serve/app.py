"""The OpenAI-compatible HTTP API: /v1/completions, /v1/chat/completions, /v1/models, and `/`.

Each request goes: check Host and Origin -> authenticate -> read the body (capped)
and validate it -> check model and length -> log the prompt (committed) ->
generate on the engine (ours or vLLM's: the same `BaseEngine` calls) -> reply.
The order of the middle steps follows the OpenAI API: a bad key is a 401 even
when the body is also bad. Errors use its shape, `{"error": {message, type,
param, code}}`, 500s included.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from typing import AsyncIterator
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from rlhf.serve.engine import BaseEngine, ContextLengthError, Delta, Failed, Finish, Job, PromptError, SamplingParams
from rlhf.serve.log import RequestLog
from rlhf.serve.schemas import ChatRequest, CompletionRequest

log = logging.getLogger(__name__)

# OpenAI's defaults: 16 tokens for completions; chat has no fixed default, so ours is a knob.
COMPLETION_DEFAULT_MAX_TOKENS = 16
# The Host names a server bound to loopback answers to. Any other name means a page on some other
# site resolved its own name to 127.0.0.1 (DNS rebinding) to reach this server from a browser.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def allowed_hosts(bind: str) -> frozenset[str] | None:
    """The Host names a server bound to `bind` answers to: the loopback names when it listens on
    loopback only; any name otherwise (the operator exposed it on purpose, under names we cannot know)."""
    if bind in LOOPBACK_HOSTS or bind.startswith("127."):
        return LOOPBACK_HOSTS | {bind}
    return None


class APIError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass
class Caller:
    user_id: str | None
    log: bool


@dataclass
class ServeState:
    engine: BaseEngine
    """Ours (serve/engine.py) or vLLM's (serve/vllm_engine.py); this module does not ask which."""
    model_name: str
    request_log: RequestLog | None
    keys: dict[str, dict] | None
    chat_max_tokens: int = 256
    allowed_hosts: frozenset[str] | None = LOOPBACK_HOSTS
    """Host header names answered; None answers any (a server bound to all interfaces)."""
    max_body_bytes: int = 4 * 2**20
    """Largest request body; a larger one is a 413 before it is read."""
    max_choices: int = 64
    """Most choices (prompts x n) in one request."""
    created: int = 0


def create_app(state: ServeState) -> FastAPI:
    app = FastAPI(title="rlhf serve", docs_url=None, redoc_url=None, openapi_url=None)
    state.created = state.created or int(time.time())
    app.state.serve = state

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        code = "unknown_url" if exc.status_code == 404 else None
        message = f"Unknown request URL: {request.method} {request.url.path}." if exc.status_code == 404 else str(exc.detail)
        return JSONResponse(APIError(exc.status_code, message, code=code).body(), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception):  # a bug: still OpenAI's shape, so clients parse it
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(APIError(500, "The server had an error while processing your request.",
                                     type="server_error").body(), status_code=500)

    @app.get("/", response_class=HTMLResponse)
    async def playground(request: Request):
        _check_host(request, state)
        return resources.files("rlhf.serve").joinpath("playground.html").read_text(encoding="utf-8")

    @app.get("/v1/models")
    async def list_models(request: Request):
        _check_host(request, state)
        _authenticate(request, state)
        return {"object": "list", "data": [_model_card(state)]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str, request: Request):
        _check_host(request, state)
        _authenticate(request, state)
        _check_model(model_id, state)
        return _model_card(state)

    @app.post("/v1/completions")
    async def completions(request: Request):
        caller = _check_post(request, state)
        body = await _parse(request, CompletionRequest, state)
        _check_common(body, state, len(body.prompt))
        max_tokens = body.max_tokens or COMPLETION_DEFAULT_MAX_TOKENS
        for text in body.prompt:
            _check_prompt_chars(state, len(text), "prompt")
        prompt_ids = await asyncio.to_thread(lambda: [state.engine.encode_text(p) for p in body.prompt])
        return await _respond(request, state, caller, body, "completions", body.prompt, prompt_ids, max_tokens)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        caller = _check_post(request, state)
        body = await _parse(request, ChatRequest, state)
        _check_common(body, state, 1)
        messages = [m.plain() for m in body.messages]
        _check_prompt_chars(state, sum(len(m["content"]) for m in messages), "messages")
        try:
            prompt_ids = [await asyncio.to_thread(state.engine.encode_chat, messages)]
        except PromptError as e:
            raise APIError(400, str(e), param="messages", code="invalid_value") from None
        room = state.engine.context_length - len(prompt_ids[0])
        max_tokens = body.max_completion_tokens or body.max_tokens or max(1, min(state.chat_max_tokens, room))
        return await _respond(request, state, caller, body, "chat.completions", [messages], prompt_ids, max_tokens)

    return app


# -- request checks -------------------------------------------------------------------


def _check_host(request: Request, state: ServeState) -> None:
    if state.allowed_hosts is None:
        return
    host = urlsplit("//" + request.headers.get("host", "")).hostname or ""
    if host not in state.allowed_hosts:
        raise APIError(400, f"Invalid Host header {host!r}: this server answers to {sorted(state.allowed_hosts)}.",
                       code="invalid_host")


def _check_post(request: Request, state: ServeState) -> Caller:
    """The checks every POST passes before its body is read; returns who is calling."""
    _check_host(request, state)
    # A browser sends Origin with every cross-site POST; only the Playground's own origin may post.
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise APIError(403, f"Cross-origin requests are not allowed (Origin {origin!r}).", code="forbidden_origin")
    caller = _authenticate(request, state)
    # Only application/json: a web page can send text/plain (or no type) cross-site without asking.
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise APIError(415, f"Unsupported Content-Type {media_type or '(none)'!r}: send 'application/json'.",
                       code="unsupported_media_type")
    return caller


def _authenticate(request: Request, state: ServeState) -> Caller:
    header = request.headers.get("authorization", "")
    key = header[7:].strip() if header[:7].lower() == "bearer " else ""
    if state.keys is None:
        return Caller(user_id=None, log=True)
    if not key:
        raise APIError(401, "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'.",
                       code="invalid_api_key")
    entry = state.keys.get(key)
    if entry is None:
        raise APIError(401, f"Incorrect API key provided: {_redact(key)}.", code="invalid_api_key")
    return Caller(user_id=entry["user_id"], log=entry["log"])


def _redact(key: str) -> str:
    return key[:3] + "*" * max(0, len(key) - 7) + key[-4:] if len(key) > 8 else "*" * len(key)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit` bytes (before reading it
    when Content-Length says so, else while it streams in)."""
    too_large = APIError(413, f"The request body is larger than this server's limit of {limit} bytes.",
                         code="request_too_large")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


async def _parse(request: Request, model: type[BaseModel], state: ServeState):
    raw = await _read_body(request, state.max_body_bytes)
    return await asyncio.to_thread(_validate, raw, model)  # megabytes of JSON are not parsed on the event loop


def _validate(raw: bytes, model: type[BaseModel]):
    try:
        data = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise APIError(400, f"The request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise APIError(400, "The request body must be a JSON object.")
    where = _unpaired_surrogate(data)
    if where is not None:
        raise APIError(400, f"Invalid '{where}': contains an unpaired UTF-16 surrogate (such as \\ud800), "
                       "which is not text.", param=where, code="invalid_value")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        missing = first["type"] == "missing"
        message = f"Missing required parameter: '{param}'." if missing else f"Invalid '{param}': {first['msg']}."
        raise APIError(400, message, param=param, code="missing_required_parameter" if missing else "invalid_value")


def _unpaired_surrogate(value, path: str = "") -> str | None:
    """The dotted path of the first string that is not valid Unicode (JSON lets "\\ud800" through)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "body"
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        where = _unpaired_surrogate(key, path) if isinstance(key, str) else None
        where = where or _unpaired_surrogate(item, f"{path}.{key}" if path else str(key))
        if where is not None:
            return where
    return None


def _check_model(name: str, state: ServeState) -> None:
    if name != state.model_name:
        raise APIError(404, f"The model '{name}' does not exist. This server serves '{state.model_name}'.",
                       param="model", code="model_not_found")


def _check_common(body, state: ServeState, prompts: int) -> None:
    _check_model(body.model, state)
    name = body.unsupported()
    if name:
        raise APIError(400, f"'{name}' is not supported by this server.", param=name, code="unsupported_parameter")
    if body.n > state.engine.max_batch_size:
        raise APIError(400, f"'n' must be at most {state.engine.max_batch_size} on this server.", param="n",
                       code="invalid_value")
    if prompts * body.n > state.max_choices:
        raise APIError(400, f"This request asks for {prompts * body.n} choices ({prompts} prompts x n={body.n}); "
                       f"this server takes at most {state.max_choices} in one request.", param="prompt",
                       code="invalid_value")


def _check_prompt_chars(state: ServeState, chars: int, param: str) -> None:
    try:
        state.engine.check_chars(chars)
    except ContextLengthError as e:
        raise APIError(400, str(e), param=param, code="context_length_exceeded") from None


def _model_card(state: ServeState) -> dict:
    return {"id": state.model_name, "object": "model", "created": state.created, "owned_by": "rlhf"}


# -- generation and replies -------------------------------------------------------------


async def _respond(request: Request, state: ServeState, caller: Caller, body, endpoint: str, prompts: list,
                   prompt_ids: list, max_tokens: int):
    param = "messages" if endpoint.startswith("chat") else "prompt"
    for ids in prompt_ids:
        try:
            state.engine.check_length(ids, max_tokens)
        except ContextLengthError as e:
            raise APIError(400, str(e), param=param, code="context_length_exceeded") from None
        except PromptError as e:
            raise APIError(400, str(e), param=param, code="invalid_value") from None
    rid = ("chatcmpl-" if endpoint.startswith("chat") else "cmpl-") + uuid.uuid4().hex
    row_ids = [f"{rid}-{i}" for i in range(len(prompts))]
    logged = state.request_log is not None and caller.log and body.store is not False
    if logged:
        # Without keys the body's `user` is whatever the client claims, so it is kept in params only.
        # Committed before any reply byte: a crash after this loses no acknowledged request.
        await asyncio.to_thread(state.request_log.start, row_ids, caller.user_id, body.model, endpoint,
                                body.params(max_tokens), prompts)
    params = SamplingParams(max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p, stop=body.stop,
                            seed=body.seed)
    generation = Generation(state, prompt_ids, params, body.n, row_ids if logged else None)
    reply = Reply(endpoint, rid, body.model)
    if body.stream:  # Starlette cancels the stream when the client disconnects
        return StreamingResponse(_sse(generation, reply, body.include_usage()), media_type="text/event-stream")
    await _run_unless_client_leaves(generation, request)
    return reply.full(generation)


async def _run_unless_client_leaves(generation: Generation, request: Request) -> None:
    """Wait for the whole answer, or stop decoding (logged "cancelled") as soon as the client disconnects."""
    work = asyncio.ensure_future(generation.drain())
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not work.done():
            work.cancel()
    if not work.cancelled():
        work.result()  # raises the APIError of a failed generation


async def _disconnected(request: Request) -> None:
    # The body is read, so the next ASGI message is the disconnect (or it never comes).
    while (await request.receive())["type"] != "http.disconnect":
        pass


class Generation:
    """The engine jobs of one request, seen as one async stream of (choice index, event)."""

    def __init__(self, state: ServeState, prompt_ids: list[list[int]], params: SamplingParams, n: int,
                 row_ids: list[str] | None):
        self.state, self.prompt_ids, self.params, self.n, self.row_ids = state, prompt_ids, params, n, row_ids
        self.choices = len(prompt_ids) * n
        self.texts = [""] * self.choices
        self.reasons: list[str | None] = [None] * self.choices  # set by each Finish
        self.completion_tokens = [0] * self.choices
        self.prompt_tokens = sum(len(ids) for ids in prompt_ids)

    async def drain(self) -> None:
        async for _ in self.events():
            pass

    async def events(self) -> AsyncIterator[tuple[int, object]]:
        loop, inbox = asyncio.get_running_loop(), asyncio.Queue()
        jobs = [Job(ids, self.params, self.n, _emitter(loop, inbox, p)) for p, ids in enumerate(self.prompt_ids)]
        self.state.engine.submit(jobs)
        remaining, status = self.choices, "cancelled"
        try:
            while remaining:
                p, event = await inbox.get()
                if isinstance(event, Failed):
                    status = "failed"
                    raise APIError(500, event.message, type="server_error")
                index = p * self.n + event.index
                if isinstance(event, Delta):
                    self.texts[index] += event.text
                elif isinstance(event, Finish):
                    self.texts[index], self.reasons[index] = event.text, event.reason
                    self.completion_tokens[index] = event.completion_tokens
                    remaining -= 1
                yield index, event
            status = "done"
        finally:
            self.state.engine.cancel(jobs)  # the client went away, or we are done: stop decoding these rows
            if status == "done":
                await asyncio.to_thread(self._log_finish, status)
            else:
                # A cancelled task cannot await (every await re-raises the cancellation),
                # so the partial response is written from a worker thread instead.
                loop.run_in_executor(None, self._log_finish, status)

    def _log_finish(self, status: str) -> None:
        if self.row_ids is None:
            return
        for p, row_id in enumerate(self.row_ids):
            part = slice(p * self.n, (p + 1) * self.n)
            self.state.request_log.finish(row_id, self.texts[part], self.reasons[part], len(self.prompt_ids[p]),
                                          sum(self.completion_tokens[part]), status)

    def usage(self) -> dict:
        completion = sum(self.completion_tokens)
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
                "total_tokens": self.prompt_tokens + completion}


def _emitter(loop: asyncio.AbstractEventLoop, inbox: asyncio.Queue, prompt_index: int):
    def emit(event) -> None:
        try:
            loop.call_soon_threadsafe(inbox.put_nowait, (prompt_index, event))
        except RuntimeError:
            pass  # the request's event loop is gone (server shutting down); nothing left to tell

    return emit


class Reply:
    """The OpenAI response and chunk shapes of one endpoint."""

    def __init__(self, endpoint: str, rid: str, model: str):
        self.chat = endpoint.startswith("chat")
        self.rid, self.model, self.created = rid, model, int(time.time())

    def _envelope(self, choices: list[dict], chunk: bool) -> dict:
        if self.chat:
            obj = "chat.completion.chunk" if chunk else "chat.completion"
        else:
            obj = "text_completion"
        return {"id": self.rid, "object": obj, "created": self.created, "model": self.model, "choices": choices}

    def full(self, run: Generation) -> dict:
        choices = []
        for i in range(run.choices):
            if self.chat:
                choices.append({"index": i, "message": {"role": "assistant", "content": run.texts[i]},
                                "logprobs": None, "finish_reason": run.reasons[i]})
            else:
                choices.append({"index": i, "text": run.texts[i], "logprobs": None, "finish_reason": run.reasons[i]})
        return {**self._envelope(choices, chunk=False), "usage": run.usage()}

    def chunk(self, index: int, text: str | None, finish_reason: str | None, role: bool = False) -> dict:
        if self.chat:
            delta = {"role": "assistant", "content": ""} if role else ({} if text is None else {"content": text})
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        else:
            choice = {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish_reason}
        return self._envelope([choice], chunk=True)

    def usage_chunk(self, run: Generation) -> dict:
        return {**self._envelope([], chunk=True), "usage": run.usage()}


async def _sse(run: Generation, reply: Reply, include_usage: bool) -> AsyncIterator[str]:
    def data(obj: dict) -> str:
        return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

    if reply.chat:
        for i in range(run.choices):
            yield data(reply.chunk(i, None, None, role=True))
    try:
        async for index, event in run.events():
            if isinstance(event, Delta):
                yield data(reply.chunk(index, event.text, None))
            elif isinstance(event, Finish):
                yield data(reply.chunk(index, None, event.reason))
    except APIError as e:  # headers are sent: report the failure in the stream, as OpenAI does
        yield data(e.body())
        return
    if include_usage:
        yield data(reply.usage_chunk(run))
    yield "data: [DONE]\n\n"
