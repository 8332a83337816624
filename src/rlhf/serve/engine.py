"""The batching engine: requests that arrive together share one forward pass.

A background thread takes waiting jobs one request at a time, round robin (so a
request of many prompts cannot hold up everyone behind it), waits up to
`batch_wait_s` for others (up to `max_batch_size` rows, one row per choice), and
decodes them as one left-padded batch with a KV cache. We run our own decoding
loop instead of `model.generate` so that rows with different max_tokens,
temperature, top_p, stop strings and seeds can share a batch: each row has its
own generator and finish flag, and the batch ends when every row has finished.
Tokens are picked by the package's one sampler (`core.generate.pick_tokens`).

`BaseEngine` is what app.py sees of an engine, this one or vLLM's (serve/vllm_engine.py): the
request side (prompts tokenized, lengths checked) and the text side (tokens to streamed text,
stop strings, finish reasons) are shared, so only who picks the tokens differs.

Legend: B rows in the batch, T prompt tokens (padded), V vocabulary.
"""

from __future__ import annotations

import abc
import copy
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import torch

from rlhf.core.generate import kv_cache, pick_tokens, positions_from_mask
from rlhf.core.ops import pad_rows

log = logging.getLogger(__name__)

# How many characters one token can stand for, at most, times this margin: a prompt longer than
# context x longest token x margin cannot fit and is refused before it is tokenized. The margin
# covers normalizers that shorten text (NFC joins a letter and its accent into one character).
PROMPT_CHARS_MARGIN = 4


@dataclass
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 1.0
    """0 means greedy decoding."""
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass
class Delta:
    index: int
    text: str


@dataclass
class Finish:
    index: int
    reason: str
    """"stop" (EOS or a stop string) or "length" (max_tokens reached)."""
    text: str
    completion_tokens: int


@dataclass
class Failed:
    message: str


@dataclass
class Job:
    """One prompt of one request, decoded as `n` rows; events go to `emit` (any thread)."""

    prompt_ids: list[int]
    params: SamplingParams
    n: int
    emit: Callable[[object], None]
    cancelled: bool = False
    """Set when the client left or the job failed: its rows stop decoding."""


@dataclass
class Row:
    """One choice of a job as its tokens arrive, on either engine."""

    job: Job
    index: int
    generator: torch.Generator | None
    """Its draws on our engine; None on vLLM's, which samples itself."""
    tokens: list[int] = field(default_factory=list)
    emitted: int = 0
    done: bool = False


class ContextLengthError(ValueError):
    pass


class PromptError(ValueError):
    """The prompt cannot be turned into tokens (no chat template, or the template refused the messages)."""


class BaseEngine(abc.ABC):
    """What app.py calls on either engine (this batching engine or vLLM's, serve/vllm_engine.py), so the
    API layer never asks which one it has: encode a prompt, check its length, `submit` jobs whose events
    come back through each job's `emit`, `cancel` them when the client leaves, `close`.

    The request side lives here, shared: prompts are tokenized with the model's own tokenizer (and
    --chat-template) whichever engine decodes them, so both see the same prompt ids."""

    def __init__(self, tokenizer, context_length: int, eos_ids: set[int], max_batch_size: int):
        self.tokenizer = tokenizer  # the decoding thread's
        # Fast tokenizers are not safe to share between threads (Rust borrow errors). Requests encode
        # with their own copy, on their own threads, so a long prompt never holds up decoding.
        self._encoder = copy.deepcopy(tokenizer)
        self._encode_lock = threading.Lock()
        self.context_length = context_length
        self.max_prompt_chars = context_length * _longest_token_chars(tokenizer) * PROMPT_CHARS_MARGIN
        self.eos_ids = eos_ids
        self.max_batch_size = max_batch_size
        self.stats = {"batches": 0, "rows": 0, "tokens": 0}
        """Counters for benchmarks and tests: batches and rows decoded (this engine only), completion tokens."""

    # -- called from request handlers (any thread) --------------------------------------

    @property
    def has_chat_template(self) -> bool:
        return bool(self._encoder.chat_template)

    def encode_text(self, text: str) -> list[int]:
        with self._encode_lock:
            return self._encoder(text)["input_ids"]

    def encode_chat(self, messages: list[dict]) -> list[int]:
        from jinja2 import TemplateError

        if not self.has_chat_template:
            raise PromptError("This model has no chat template, so chat messages cannot be turned into a prompt. "
                              "Start the server with --chat-template FILE (a Jinja template, as in vLLM), or send "
                              "the text to /v1/completions.")
        with self._encode_lock:
            try:
                text = self._encoder.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            except TemplateError as e:  # the template's own raise_exception, e.g. "roles must alternate"
                raise PromptError(f"The chat template refused these messages: {e}") from None
            # The template already wrote any special tokens the model expects.
            return self._encoder(text, add_special_tokens=False)["input_ids"]

    def check_length(self, prompt_ids: list[int], max_tokens: int) -> None:
        if not prompt_ids:
            raise PromptError("The prompt has no tokens.")
        if len(prompt_ids) + max_tokens > self.context_length:
            raise ContextLengthError(
                f"This model's maximum context length is {self.context_length} tokens. However, you requested "
                f"{len(prompt_ids) + max_tokens} tokens ({len(prompt_ids)} in the prompt, {max_tokens} for the "
                "completion). Please reduce the prompt or max_tokens."
            )

    def check_chars(self, chars: int) -> None:
        """Refuse a prompt far too long for the context before paying to tokenize it."""
        if chars > self.max_prompt_chars:
            raise ContextLengthError(
                f"This model's maximum context length is {self.context_length} tokens. However, the prompt has "
                f"{chars} characters, far more than that many tokens can hold. Please reduce the prompt.")

    def check_jobs(self, jobs: list[Job]) -> None:
        for job in jobs:
            if job.n > self.max_batch_size:
                raise ValueError(f"n={job.n} is more than the server's max batch size {self.max_batch_size}")
            if not job.prompt_ids:
                raise ValueError("a job needs at least one prompt token")

    @abc.abstractmethod
    def submit(self, jobs: list[Job]) -> None:
        """Queue these jobs (check_jobs has passed); their events come back through job.emit."""

    # -- the decoding side (the engine's own thread) -----------------------------------
    # Both engines turn tokens into text here, so the text, the stop strings and what is streamed
    # are the same whoever picked the tokens.

    def add_token(self, row: Row, token: int) -> None:
        """Append a live row's next token; stream its new text; finish it on EOS, a stop string or length."""
        if token in self.eos_ids:
            self._finish(row, "stop", self._decode(row.tokens))
            return
        row.tokens.append(token)
        self.stats["tokens"] += 1
        text = self._decode(row.tokens)
        cut = _find_stop(text, row.job.params.stop)
        if cut is not None:
            self._finish(row, "stop", text[:cut])
        elif len(row.tokens) >= row.job.params.max_tokens:
            self._finish(row, "length", text)
        else:
            self._emit_safe_prefix(row, text)

    def fail(self, job: Job, error: Exception) -> None:
        """Fail this job alone: it emits Failed once and its rows stop."""
        log.error("a request failed in the engine: %s: %s", type(error).__name__, error)
        if not job.cancelled:
            job.cancelled = True
            job.emit(Failed(f"generation failed: {type(error).__name__}: {error}"))

    def _emit_safe_prefix(self, row: Row, text: str) -> None:
        # Hold back a trailing partial UTF-8 character (decoded as U+FFFD) and any
        # tail that could still become a stop string, so streamed text never has
        # to be taken back.
        end = len(text.rstrip("\ufffd")) - _stop_prefix_overlap(text, row.job.params.stop)
        if end > row.emitted:
            row.job.emit(Delta(row.index, text[row.emitted:end]))
            row.emitted = end

    def _finish(self, row: Row, reason: str, text: str) -> None:
        if len(text) > row.emitted:
            row.job.emit(Delta(row.index, text[row.emitted:]))
        row.emitted = len(text)
        row.done = True
        row.job.emit(Finish(row.index, reason, text, len(row.tokens)))

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    @abc.abstractmethod
    def cancel(self, jobs: list[Job]) -> None:
        """Stop decoding these jobs (their client left, or their request is over); they emit nothing more."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the engine and release what it holds."""


class Engine(BaseEngine):
    def __init__(self, model, tokenizer, max_batch_size: int = 8, batch_wait_s: float = 0.01, device: str = "cpu"):
        super().__init__(tokenizer, context_length(model.config, tokenizer),
                         eos_ids(model.generation_config, tokenizer), max_batch_size)
        self.model = model.to(device).eval()
        self.device = device
        self.batch_wait_s = batch_wait_s
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self.eos_ids))
        self._waiting: deque[deque[Job]] = deque()  # one queue of jobs per request, oldest request first
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._seed_source = torch.Generator().manual_seed(torch.seed())
        self.before_batch: Callable[[list[Job]], None] | None = None
        """Called on the worker thread with each batch's jobs before decoding them (tests watch batching here)."""
        self._thread = threading.Thread(target=self._run, name="rlhf-serve-engine", daemon=True)
        self._thread.start()

    def submit(self, jobs: list[Job]) -> None:
        """Queue one request's jobs; requests take turns, one job each, when batches are made."""
        self.check_jobs(jobs)
        with self._cond:
            self._waiting.append(deque(jobs))
            self._cond.notify()

    def cancel(self, jobs: list[Job]) -> None:
        for job in jobs:  # their rows stop at the next step; a job still queued is dropped when its turn comes
            job.cancelled = True

    def waiting(self) -> int:
        """Jobs queued and not yet in a batch."""
        with self._cond:
            return sum(len(q) for q in self._waiting)

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify()
        self._thread.join(timeout=10)

    # -- the worker thread ---------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            jobs = self._collect()
            if not jobs:
                continue
            if self.before_batch is not None:
                self.before_batch(jobs)
            try:
                self._generate(jobs)
            except Exception as e:  # a failed forward pass must not kill the server: tell each waiting request
                log.exception("generation failed")
                for job in jobs:
                    job.emit(Failed(f"generation failed: {type(e).__name__}: {e}"))

    def _collect(self) -> list[Job]:
        """Jobs for one batch: whatever waits now, then whatever arrives within the wait window."""
        batch: list[Job] = []
        with self._cond:
            if not self._cond.wait_for(lambda: self._waiting or self._stop.is_set(), timeout=0.1):
                return []
            deadline = time.monotonic() + self.batch_wait_s
            rows = self._take_turns(batch, 0)
            while rows < self.max_batch_size and not self._stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(timeout=remaining)
                rows = self._take_turns(batch, rows)
        return batch

    def _take_turns(self, batch: list[Job], rows: int) -> int:
        """Move jobs into the batch one request at a time, round robin, while they fit; return its rows.
        The oldest request picks first, so a job as wide as the batch is never passed over for good."""
        added = True
        while added and rows < self.max_batch_size:
            added = False
            for queue in list(self._waiting):
                while queue and queue[0].cancelled:  # its client left while it waited
                    queue.popleft()
                if queue and rows + queue[0].n <= self.max_batch_size:
                    job = queue.popleft()
                    batch.append(job)
                    rows += job.n
                    added = True
                if not queue:
                    self._waiting.remove(queue)
                if rows >= self.max_batch_size:
                    break
        return rows

    def _make_rows(self, jobs: list[Job]) -> list[Row]:
        rows = []
        for job in jobs:
            try:
                generators = [self._generator(job.params.seed, i) for i in range(job.n)]
            except (RuntimeError, OverflowError, ValueError) as e:  # e.g. a seed wider than 64 bits
                self.fail(job, e)
                continue
            rows += [Row(job, i, g) for i, g in enumerate(generators)]
        return rows

    def _generator(self, seed: int | None, index: int) -> torch.Generator:
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,), generator=self._seed_source))
        return torch.Generator().manual_seed(seed + index)  # n choices with one seed must still differ

    @torch.inference_mode()
    def _generate(self, jobs: list[Job]) -> None:
        rows = self._make_rows(jobs)
        if not rows:
            return
        input_ids, attention_mask = (x.to(self.device) for x in
                                     pad_rows([r.job.prompt_ids for r in rows], self.pad_id, left=True))  # (B, T)
        # Positions count real tokens only, so a left-padded row sees the same
        # positions as when it runs alone (what `generate` does for GPT-2 too).
        position_ids = positions_from_mask(attention_mask)  # (B, T)
        cache = kv_cache(self.model)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         use_cache=True, logits_to_keep=1, **cache)
        logits = out.logits[:, -1, :]  # (B, V)
        position_ids = position_ids[:, -1:]  # (B, 1)
        steps = max(r.job.params.max_tokens for r in rows)
        self.stats["batches"] += 1
        self.stats["rows"] += len(rows)
        for _ in range(steps):
            next_ids = [self._next_token(logits[b], row) for b, row in enumerate(rows)]
            self._advance(rows, next_ids)
            if all(r.done for r in rows):
                break
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(rows), 1)], dim=1)  # (B, T+t)
            position_ids = position_ids + 1  # (B, 1)
            out = self.model(input_ids=torch.tensor(next_ids, device=self.device)[:, None],
                             attention_mask=attention_mask, position_ids=position_ids, use_cache=True, **cache)
            logits = out.logits[:, -1, :]  # (B, V)

    def _next_token(self, logits: torch.Tensor, row: Row) -> int:
        """The row's next token from its (V,) logits; a finished row gets padding it will ignore."""
        if row.done or row.job.cancelled:
            return self.pad_id
        params = row.job.params
        try:
            u = torch.rand(1, generator=row.generator)  # (1,)
            return int(pick_tokens(logits[None], u, params.temperature, params.top_p)[0])
        except Exception as e:  # one request's failure must not fail the requests sharing its batch
            self.fail(row.job, e)
            return self.pad_id

    def _advance(self, rows: list[Row], next_ids: list[int]) -> None:
        for row, token in zip(rows, next_ids):
            if row.done:
                continue  # finished rows keep decoding in the batch; their tokens are ignored
            if row.job.cancelled:
                row.done = True
                continue
            self.add_token(row, token)


def _find_stop(text: str, stops: list[str]) -> int | None:
    hits = [text.find(s) for s in stops if s and s in text]
    return min(hits) if hits else None


def _stop_prefix_overlap(text: str, stops: list[str]) -> int:
    """Length of the longest tail of `text` that is a proper prefix of some stop string."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best


def eos_ids(generation_config, tokenizer) -> set[int]:
    """The tokenizer's EOS and the model's generation_config's (None when the model has none): either ends an answer."""
    ids = set()
    for value in (tokenizer.eos_token_id, getattr(generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(v for v in value if isinstance(v, int))
    return ids


def _longest_token_chars(tokenizer) -> int:
    """Characters in the vocabulary's longest token string (a byte-level token's string has one
    character per byte, so this bounds the characters of text one token can stand for)."""
    return max((len(t) for t in tokenizer.get_vocab()), default=1)


def context_length(config, tokenizer) -> int:
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return int(min(tokenizer.model_max_length, 2048))
