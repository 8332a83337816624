"""demo/workers: a failed stage ends the demo's worker processes instead of waiting for them."""
import os
import time

import pytest

from rlhf.demo.workers import Job, Workers


@pytest.mark.timeout(300)  # before the fix the with block waited the full 600 s sleep
def test_a_failing_stage_kills_the_other_workers_instead_of_waiting_for_them():
    workers = Workers(2, threads=1)
    pids: list[int] = []
    with pytest.raises(ValueError):
        with workers:
            try:
                workers.run([Job("sleeps", time.sleep, (600,)), Job("fails", int, ("not a number",))], "test")
            finally:
                pids = [p.pid for p in workers._pool._processes.values()]
    assert len(pids) == 2
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
