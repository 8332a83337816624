"""The OpenAI-compatible HTTP API: /v1/completions, /v1/chat/completions, /v1/models, and `/`.

Each request goes: authenticate -> parse and validate -> check model and length
-> log the prompt (committed) -> generate on the batching engine -> reply. The
order of the first steps follows the OpenAI API: a bad key is a 401 even when the
body is also bad. Errors use its shape, `{"error": {message, type, param, code}}`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from typing import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from rlhf.serve.engine import ContextLengthError, Delta, Engine, Failed, Finish, Job, SamplingParams
from rlhf.serve.log import RequestLog
from rlhf.serve.schemas import ChatRequest, CompletionRequest

# OpenAI's defaults: 16 tokens for completions; chat has no fixed default, so ours is a knob.
COMPLETION_DEFAULT_MAX_TOKENS = 16


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
    engine: Engine
    model_name: str
    request_log: RequestLog | None
    keys: dict[str, dict] | None
    chat_max_tokens: int = 256
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

    @app.get("/", response_class=HTMLResponse)
    async def playground():
        return resources.files("rlhf.serve").joinpath("playground.html").read_text(encoding="utf-8")

    @app.get("/v1/models")
    async def list_models(request: Request):
        _authenticate(request, state)
        return {"object": "list", "data": [_model_card(state)]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str, request: Request):
        _authenticate(request, state)
        _check_model(model_id, state)
        return _model_card(state)

    @app.post("/v1/completions")
    async def completions(request: Request):
        caller = _authenticate(request, state)
        body = await _parse(request, CompletionRequest)
        _check_common(body, state)
        max_tokens = body.max_tokens or COMPLETION_DEFAULT_MAX_TOKENS
        prompt_ids = [state.engine.encode_text(p) for p in body.prompt]
        return await _respond(state, caller, body, "completions", body.prompt, prompt_ids, max_tokens)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        caller = _authenticate(request, state)
        body = await _parse(request, ChatRequest)
        _check_common(body, state)
        messages = [m.plain() for m in body.messages]
        prompt_ids = [state.engine.encode_chat(messages)]
        room = state.engine.context_length - len(prompt_ids[0])
        max_tokens = body.max_completion_tokens or body.max_tokens or max(1, min(state.chat_max_tokens, room))
        return await _respond(state, caller, body, "chat.completions", [messages], prompt_ids, max_tokens)

    return app


# -- request checks -------------------------------------------------------------------


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


async def _parse(request: Request, model: type[BaseModel]):
    raw = await request.body()
    try:
        data = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise APIError(400, f"The request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise APIError(400, "The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        missing = first["type"] == "missing"
        message = f"Missing required parameter: '{param}'." if missing else f"Invalid '{param}': {first['msg']}."
        raise APIError(400, message, param=param, code="missing_required_parameter" if missing else "invalid_value")


def _check_model(name: str, state: ServeState) -> None:
    if name != state.model_name:
        raise APIError(404, f"The model '{name}' does not exist. This server serves '{state.model_name}'.",
                       param="model", code="model_not_found")


def _check_common(body, state: ServeState) -> None:
    _check_model(body.model, state)
    name = body.unsupported()
    if name:
        raise APIError(400, f"'{name}' is not supported by this server.", param=name, code="unsupported_parameter")
    if body.n > state.engine.max_batch_size:
        raise APIError(400, f"'n' must be at most {state.engine.max_batch_size} on this server.", param="n",
                       code="invalid_value")


def _model_card(state: ServeState) -> dict:
    return {"id": state.model_name, "object": "model", "created": state.created, "owned_by": "rlhf"}


# -- generation and replies -------------------------------------------------------------


async def _respond(state: ServeState, caller: Caller, body, endpoint: str, prompts: list, prompt_ids: list,
                   max_tokens: int):
    for ids in prompt_ids:
        try:
            state.engine.check_length(ids, max_tokens)
        except ContextLengthError as e:
            raise APIError(400, str(e), param="messages" if endpoint.startswith("chat") else "prompt",
                           code="context_length_exceeded") from None
    rid = ("chatcmpl-" if endpoint.startswith("chat") else "cmpl-") + uuid.uuid4().hex
    row_ids = [f"{rid}-{i}" for i in range(len(prompts))]
    logged = state.request_log is not None and caller.log and body.store is not False
    if logged:
        user_id = caller.user_id if state.keys is not None else body.user
        # Committed before any reply byte: a crash after this loses no acknowledged request.
        await asyncio.to_thread(state.request_log.start, row_ids, user_id, body.model, endpoint,
                                body.params(max_tokens), prompts)
    params = SamplingParams(max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p, stop=body.stop,
                            seed=body.seed)
    run = Run(state, prompt_ids, params, body.n, row_ids if logged else None)
    reply = Reply(endpoint, rid, body.model)
    if body.stream:
        return StreamingResponse(_sse(run, reply, body.include_usage()), media_type="text/event-stream")
    async for _ in run.events():
        pass
    return reply.full(run)


class Run:
    """The engine jobs of one request, seen as one async stream of (choice index, event)."""

    def __init__(self, state: ServeState, prompt_ids: list[list[int]], params: SamplingParams, n: int,
                 row_ids: list[str] | None):
        self.state, self.prompt_ids, self.params, self.n, self.row_ids = state, prompt_ids, params, n, row_ids
        self.choices = len(prompt_ids) * n
        self.texts = [""] * self.choices
        self.reasons: list[str | None] = [None] * self.choices  # set by each Finish
        self.completion_tokens = [0] * self.choices
        self.prompt_tokens = sum(len(ids) for ids in prompt_ids)

    async def events(self) -> AsyncIterator[tuple[int, object]]:
        loop, inbox = asyncio.get_running_loop(), asyncio.Queue()
        jobs = [Job(ids, self.params, self.n, _emitter(loop, inbox, p)) for p, ids in enumerate(self.prompt_ids)]
        for job in jobs:
            self.state.engine.submit(job)
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
            for job in jobs:  # the client went away, or we are done: stop decoding these rows
                job.cancelled = True
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

    def full(self, run: Run) -> dict:
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

    def usage_chunk(self, run: Run) -> dict:
        return {**self._envelope([], chunk=True), "usage": run.usage()}


async def _sse(run: Run, reply: Reply, include_usage: bool) -> AsyncIterator[str]:
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
