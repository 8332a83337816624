"""Independent demo stages in worker processes, one per core, one torch thread each.

The demo's stages form a short graph: SFT of each size, then one reward model, then six PPO
runs, then sampling every model. Stages at one level do not depend on each other, and the
models are so small that one process uses one core well and a second thread buys little
(docs/demo.md, "Threads"), so the demo runs a level's stages side by side, one process a core.

Every stage seeds everything it uses from its own config, so a stage gives the same numbers
in a worker as in the main process: `workers=1` (no pool, everything in-process) and
`workers=2` give identical results (tests/demo checks it on the quick demo).

Workers are started with `spawn`, not `fork`: a forked child of a process that has already
run torch can deadlock in OpenMP, and spawn is the only start method on macOS and Windows.
The price is one import of torch and transformers per worker (~2 s), paid once per demo.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable

from tqdm.contrib.logging import logging_redirect_tqdm

from rlhf.core.run import progress

log = logging.getLogger("rlhf.demo")


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


@dataclass
class Job:
    """One stage: `fn(*args)` under a name for the log."""

    name: str
    fn: Callable
    args: tuple = ()


def _init_worker(threads: int) -> None:
    # Stage progress bars from several processes would overwrite each other on one terminal line:
    # workers log a line per stage instead, and the main process shows how many stages are done.
    os.environ["TQDM_DISABLE"] = "1"
    from rlhf.core.run import setup_logging

    setup_logging()
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def _timed(fn: Callable, args: tuple) -> tuple[Any, float, float]:
    """fn(*args), its wall time, and this process's peak resident memory in MB so far."""
    start = time.time()
    result = fn(*args)
    return result, time.time() - start, peak_rss_mb()


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB). VmHWM, not ru_maxrss: a spawned worker's ru_maxrss starts at
    its parent's size at fork time, VmHWM counts only what it used since exec. NaN where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class Workers:
    """`run(jobs)` runs independent stages, in worker processes when `workers` > 1, and returns their
    results in the jobs' order with each job's wall time. Used as a context manager so the processes
    end with the demo."""

    def __init__(self, workers: int, threads: int = 1):
        self.workers, self.threads = workers, threads
        self._pool: ProcessPoolExecutor | None = None
        self.seconds: dict[str, float] = {}
        self.peak_mb = 0.0  # the largest worker's peak resident memory

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if self._pool is None:
            return
        if exc_type is not None:
            # A failed stage, Ctrl-C or a test's timeout: the other stages' results are lost anyway, and
            # shutdown(wait=True) would let them run to the end (a pretraining worker: minutes) first.
            for process in list(self._pool._processes.values()):  # no public API before Python 3.14
                process.kill()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = None

    def pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                             initializer=_init_worker, initargs=(self.threads,))
        return self._pool

    def run(self, jobs: list[Job], what: str) -> list[Any]:
        if not jobs:
            return []
        if self.workers == 1 or len(jobs) == 1:
            out = []
            for job in jobs:
                result, seconds, _ = _timed(job.fn, job.args)
                self._done(job, seconds, what, len(out) + 1, len(jobs))
                out.append(result)
            return out
        futures: dict[Future, int] = {self.pool().submit(_timed, job.fn, job.args): i for i, job in enumerate(jobs)}
        log.info("%s: %d stages on %d worker processes (%s)", what, len(jobs), self.workers,
                 ", ".join(j.name for j in jobs))
        results: list[Any] = [None] * len(jobs)
        pending, done = set(futures), 0
        with logging_redirect_tqdm(), progress(len(jobs), what) as bar:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    i = futures[future]
                    try:
                        results[i], seconds, peak = future.result()
                        self.peak_mb = max(self.peak_mb, peak)
                    except BaseException:
                        for other in pending:
                            other.cancel()
                        log.error("%s: stage %s failed", what, jobs[i].name)
                        raise
                    done += 1
                    self._done(jobs[i], seconds, what, done, len(jobs))
                    bar.update(1)
        return results

    def _done(self, job: Job, seconds: float, what: str, done: int, total: int) -> None:
        self.seconds[job.name] = round(seconds, 1)
        log.info("%s: %s done in %.0f s (%d/%d)", what, job.name, seconds, done, total)
