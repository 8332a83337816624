"""Run independent pieces of work side by side on a CPU, one core each.

The models this project trains on a laptop are small, and their matmuls scale
poorly across a CPU's intra-op threads. When a step holds two independent pieces
of work (PPO's policy and value model: separate weights, separate losses), giving
each its own core and one intra-op thread is faster than running them one after
the other on every core. Each piece runs single-threaded, so its numbers are
deterministic, and no two pieces touch the same tensors.

Autocast and grad mode are thread-local in PyTorch: each piece sets its own.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import torch

_pool: ThreadPoolExecutor | None = None


def streams_available(device: torch.device, num_processes: int) -> bool:
    """Side-by-side pieces pay off on a CPU with at least two intra-op threads and one process (DDP wants one
    backward per step through its own wrapper)."""
    return device.type == "cpu" and num_processes == 1 and torch.get_num_threads() >= 2


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with `n` torch intra-op threads, then restore the previous number."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_pieces(*pieces: Callable[[], object], side_by_side: bool) -> list:
    """Each piece's result in order: side by side on a core each when `side_by_side`, else one after the other."""
    return run_side_by_side(*pieces) if side_by_side else [piece() for piece in pieces]


def run_side_by_side(*pieces: Callable[[], object]) -> list:
    """Call every piece, each in its own thread with single-threaded ops; their results in order. An
    exception in any piece is raised here after all have finished."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rlhf-stream")
    with torch_threads(1):
        futures = [_pool.submit(piece) for piece in pieces]
        errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error
    return [f.result() for f in futures]
