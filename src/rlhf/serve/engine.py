"""The batching engine: requests that arrive together share one forward pass.

A background thread takes the first waiting request, waits up to `batch_wait_s`
for others (up to `max_batch_size` rows, one row per choice), and decodes them as
one left-padded batch with a KV cache. We run our own decoding loop instead of
`model.generate` so that rows with different max_tokens, temperature, top_p,
stop strings and seeds can share a batch: each row has its own sampler and
finish flag, and the batch ends when every row has finished.

Legend: B rows in the batch, T prompt tokens (padded), V vocabulary.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

log = logging.getLogger(__name__)


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


@dataclass
class _Row:
    job: Job
    index: int
    generator: torch.Generator
    tokens: list[int] = field(default_factory=list)
    emitted: int = 0
    done: bool = False


class ContextLengthError(ValueError):
    pass


class Engine:
    def __init__(self, model, tokenizer, max_batch_size: int = 8, batch_wait_s: float = 0.01, device: str = "cpu"):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = device
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        self.context_length = _context_length(model.config, tokenizer)
        self.eos_ids = _eos_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self.eos_ids))
        # Fast tokenizers are not safe to share between threads (Rust borrow errors),
        # and both request threads (encode) and the worker (decode) use this one.
        self._tok_lock = threading.Lock()
        self._queue: queue.Queue[Job] = queue.Queue()
        self._carry: Job | None = None  # a job that did not fit the last batch
        self._stop = threading.Event()
        self._seed_source = torch.Generator().manual_seed(torch.seed())
        self.stats = {"batches": 0, "rows": 0, "tokens": 0}
        self._thread = threading.Thread(target=self._run, name="rlhf-serve-engine", daemon=True)
        self._thread.start()

    # -- called from request handlers -------------------------------------------------

    def encode_text(self, text: str) -> list[int]:
        with self._tok_lock:
            return self.tokenizer(text)["input_ids"]

    def encode_chat(self, messages: list[dict]) -> list[int]:
        with self._tok_lock:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            # The template already wrote any special tokens the model expects.
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def check_length(self, prompt_ids: list[int], max_tokens: int) -> None:
        if len(prompt_ids) + max_tokens > self.context_length:
            raise ContextLengthError(
                f"This model's maximum context length is {self.context_length} tokens. However, you requested "
                f"{len(prompt_ids) + max_tokens} tokens ({len(prompt_ids)} in the prompt, {max_tokens} for the "
                "completion). Please reduce the prompt or max_tokens."
            )

    def submit(self, job: Job) -> None:
        if job.n > self.max_batch_size:
            raise ValueError(f"n={job.n} is more than the server's max batch size {self.max_batch_size}")
        self._queue.put(job)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    # -- the worker thread ---------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            jobs = self._collect()
            if not jobs:
                continue
            try:
                self._generate(jobs)
            except Exception as e:  # a failed batch must not kill the server: tell each waiting request
                log.exception("generation failed")
                for job in jobs:
                    job.emit(Failed(f"generation failed: {type(e).__name__}: {e}"))

    def _collect(self) -> list[Job]:
        """The first waiting job, then whatever else arrives within the wait window."""
        first = self._carry
        self._carry = None
        if first is None:
            try:
                first = self._queue.get(timeout=0.1)
            except queue.Empty:
                return []
        jobs, rows = [first], first.n
        deadline = time.monotonic() + self.batch_wait_s
        while rows < self.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if rows + job.n > self.max_batch_size:
                self._carry = job
                break
            jobs.append(job)
            rows += job.n
        return [job for job in jobs if not job.cancelled]

    def _make_rows(self, jobs: list[Job]) -> list[_Row]:
        rows = []
        for job in jobs:
            for i in range(job.n):
                g = torch.Generator()
                if job.params.seed is not None:
                    g.manual_seed(job.params.seed + i)  # n choices with one seed must still differ
                else:
                    g.manual_seed(int(torch.randint(0, 2**62, (1,), generator=self._seed_source)))
                rows.append(_Row(job, i, g))
        return rows

    @torch.inference_mode()
    def _generate(self, jobs: list[Job]) -> None:
        rows = self._make_rows(jobs)
        input_ids, attention_mask = self._left_pad([r.job.prompt_ids for r in rows])  # (B, T)
        # Positions count real tokens only, so a left-padded row sees the same
        # positions as when it runs alone (what `generate` does for GPT-2 too).
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         use_cache=True)
        past, logits = out.past_key_values, out.logits[:, -1, :].float()  # (B, V)
        position_ids = position_ids[:, -1:]  # (B, 1)
        steps = max(r.job.params.max_tokens for r in rows)
        self.stats["batches"] += 1
        self.stats["rows"] += len(rows)
        for _ in range(steps):
            next_ids = torch.tensor([_sample(logits[b], r) for b, r in enumerate(rows)], device=self.device)  # (B,)
            self._advance(rows, next_ids.tolist())
            if all(r.done for r in rows):
                break
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(rows), 1)], dim=1)  # (B, T+t)
            position_ids = position_ids + 1  # (B, 1)
            out = self.model(input_ids=next_ids[:, None], attention_mask=attention_mask, position_ids=position_ids,
                             past_key_values=past, use_cache=True)
            past, logits = out.past_key_values, out.logits[:, -1, :].float()  # (B, V)

    def _left_pad(self, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)  # (B, T)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)  # (B, T)
        for b, p in enumerate(prompts):
            ids[b, width - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[b, width - len(p):] = 1
        return ids.to(self.device), mask.to(self.device)

    def _advance(self, rows: list[_Row], next_ids: list[int]) -> None:
        """Append each live row's token; stream its new text; finish it on EOS, a stop string or length."""
        for row, token in zip(rows, next_ids):
            if row.done:
                continue  # finished rows keep decoding in the batch; their tokens are ignored
            if row.job.cancelled:
                row.done = True
                continue
            if token in self.eos_ids:
                self._finish(row, "stop", self._decode(row.tokens))
                continue
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

    def _emit_safe_prefix(self, row: _Row, text: str) -> None:
        # Hold back a trailing partial UTF-8 character (decoded as U+FFFD) and any
        # tail that could still become a stop string, so streamed text never has
        # to be taken back.
        end = len(text.rstrip("\ufffd")) - _stop_prefix_overlap(text, row.job.params.stop)
        if end > row.emitted:
            row.job.emit(Delta(row.index, text[row.emitted:end]))
            row.emitted = end

    def _finish(self, row: _Row, reason: str, text: str) -> None:
        if len(text) > row.emitted:
            row.job.emit(Delta(row.index, text[row.emitted:]))
        row.emitted = len(text)
        row.done = True
        row.job.emit(Finish(row.index, reason, text, len(row.tokens)))

    def _decode(self, tokens: list[int]) -> str:
        with self._tok_lock:
            return self.tokenizer.decode(tokens, skip_special_tokens=True)


def _sample(logits: torch.Tensor, row: _Row) -> int:
    """One token from (V,) logits with the row's temperature, top_p and generator."""
    params = row.job.params
    if params.temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / params.temperature, dim=-1)  # (V,)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)  # (V,)
        # Keep the smallest set whose mass reaches top_p (the top token always stays).
        outside = sorted_probs.cumsum(-1) - sorted_probs >= params.top_p
        sorted_probs[outside] = 0
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs.cpu(), 1, generator=row.generator))


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


def _eos_ids(model, tokenizer) -> set[int]:
    ids = set()
    for value in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(v for v in value if isinstance(v, int))
    return ids


def _context_length(config, tokenizer) -> int:
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return int(min(tokenizer.model_max_length, 2048))
