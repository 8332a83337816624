"""The decoding loop's pieces: stop handling, nucleus sampling, mixed parameters in one batch,
fair turns between requests, and failures that stay with their own request."""

from __future__ import annotations

import threading

import pytest
import torch

from rlhf.serve.engine import Delta, Engine, Failed, Finish, Job, Row, SamplingParams, _stop_prefix_overlap
from tests.serve.conftest import Gate


@pytest.mark.parametrize(
    "text, stops, held",
    [("hello wor", ["world"], 3), ("hello", ["world"], 0), ("abc\n", ["\n\n"], 1), ("aaa", ["aab", "aaab"], 3),
     ("xyz", [], 0)],
)
def test_stop_prefix_overlap_holds_back_a_possible_stop_start(text, stops, held):
    assert _stop_prefix_overlap(text, stops) == held


@pytest.fixture(scope="module")
def tiny(tiny_gpt2):
    from rlhf.core.models import load_causal_lm, load_tokenizer

    return load_causal_lm(str(tiny_gpt2)), load_tokenizer(str(tiny_gpt2), padding_side="left")


@pytest.fixture
def engine(tiny):
    eng = Engine(*tiny, max_batch_size=4, batch_wait_s=0.0)
    yield eng
    eng.close()


def test_top_p_keeps_only_the_nucleus(engine):
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    row = Row(Job([0], SamplingParams(temperature=1.0, top_p=0.7), 1, print), 0, torch.Generator().manual_seed(0))
    draws = {engine._next_token(logits, row) for _ in range(300)}
    assert draws == {0, 1}  # 0.5 < 0.7 so token 1 joins; 0.8 >= 0.7 so token 2 never does
    row.job.params.top_p = 0.4
    assert {engine._next_token(logits, row) for _ in range(50)} == {0}  # the top token alone already reaches 0.4


class Collector:
    """Submits requests of (prompt, params, n) jobs and gathers each job's events."""

    def __init__(self, engine):
        self.engine, self.jobs, self.results, self.failures = engine, [], [], []
        self.done = threading.Semaphore(0)

    def submit(self, *spec) -> list[int]:
        """One request; returns the indices of its jobs in `self.jobs` and `self.results`."""
        jobs = []
        for prompt, params, n in spec:
            self.results.append({})
            self.failures.append(None)
            jobs.append(Job(self.engine.encode_text(prompt), params, n, self._emitter(len(self.jobs) + len(jobs), n)))
        first = len(self.jobs)
        self.jobs += jobs
        self.engine.submit(jobs)
        return list(range(first, len(self.jobs)))

    def _emitter(self, j: int, n: int):
        deltas: dict[int, str] = {}

        def emit(event):
            if isinstance(event, Delta):
                deltas[event.index] = deltas.get(event.index, "") + event.text
            elif isinstance(event, Finish):
                self.results[j][event.index] = (deltas.get(event.index, ""), event)
                self.done.release()
            elif isinstance(event, Failed):
                self.failures[j] = event
                for _ in range(n):  # none of its rows will finish
                    self.done.release()
        return emit

    def wait(self) -> None:
        for _ in range(sum(job.n for job in self.jobs)):
            assert self.done.acquire(timeout=60)


GREEDY = SamplingParams(max_tokens=10, temperature=0)


def test_rows_with_different_parameters_share_a_batch_without_interfering(engine):
    gate, jobs = Gate(engine), Collector(engine)
    gate.hold(lambda: jobs.submit(("hello world", GREEDY, 1)))  # alone: the answer to compare with
    mixed = [jobs.submit(("hello world", GREEDY, 1)),
             jobs.submit(("the quick brown", SamplingParams(max_tokens=3, temperature=1.3, top_p=0.9, seed=1), 2)),
             jobs.submit(("yes no", SamplingParams(max_tokens=20, temperature=0.7, stop=["o"]), 1))]
    gate.wait_until(lambda: engine.waiting() == 3)
    gate.open()
    jobs.wait()
    assert [len(b) for b in gate.batches] == [1, 3]  # all four rows of the three requests in one batch
    alone = jobs.results[0][0][1].text
    streamed, finish = jobs.results[mixed[0][0]][0]
    assert finish.text == alone and streamed == alone and finish.reason == "length"
    assert all(f.completion_tokens == 3 and f.reason == "length" for _, f in jobs.results[mixed[1][0]].values())
    streamed, finish = jobs.results[mixed[2][0]][0]
    assert "o" not in finish.text and streamed == finish.text


def test_requests_take_turns_so_a_large_one_does_not_hold_up_others(engine):
    """Issue 16 item 6: a request of many prompts queued first must not delay one queued after it
    until all of its prompts are decoded; each batch takes one job per request in turn."""
    gate, jobs = Gate(engine), Collector(engine)
    few = SamplingParams(max_tokens=2, temperature=0)
    gate.hold(lambda: jobs.submit(("hello", few, 1)))
    big = jobs.submit(*[(f"{i} 1 2 3", few, 1) for i in range(12)])
    small = jobs.submit(("yes no", few, 1))
    gate.wait_until(lambda: engine.waiting() == 13)
    gate.open()
    jobs.wait()
    second = gate.batches[1]  # the first batch after the plug's
    assert second == [jobs.jobs[big[0]], jobs.jobs[small[0]], jobs.jobs[big[1]], jobs.jobs[big[2]]]
    assert all(jobs.results[j] for j in big + small)


def test_one_requests_bad_settings_fail_only_that_request(engine):
    """Issue 16 item 1: a seed torch cannot take used to fail every request in the batch with a 500."""
    gate, jobs = Gate(engine), Collector(engine)
    gate.hold(lambda: jobs.submit(("hello", GREEDY, 1)))
    (good,) = jobs.submit(("hello world", GREEDY, 1))
    (bad,) = jobs.submit(("the quick brown", SamplingParams(max_tokens=5, seed=2**64), 1))
    gate.wait_until(lambda: engine.waiting() == 2)
    gate.open()
    jobs.wait()
    assert len(gate.batches[1]) == 2  # they did share a batch
    assert jobs.failures[bad] is not None and "Overflow" in jobs.failures[bad].message
    assert jobs.failures[good] is None and jobs.results[good][0][1].completion_tokens == 10


def test_a_request_wider_than_the_batch_is_refused(engine):
    with pytest.raises(ValueError, match="max batch size"):
        engine.submit([Job([1], SamplingParams(), 5, print)])


def test_every_eos_id_of_the_tokenizer_and_generation_config_ends_an_answer(tiny):
    """Llama 3 style: generation_config.json lists <|eot_id|> beside the tokenizer's EOS; both engines
    stop on any of them (vLLM gets them as stop_token_ids)."""
    from transformers import GenerationConfig

    from rlhf.serve.engine import eos_ids

    _, tok = tiny
    assert eos_ids(GenerationConfig(eos_token_id=[tok.eos_token_id, 7]), tok) == {tok.eos_token_id, 7}
    assert eos_ids(GenerationConfig(eos_token_id=9), tok) == {tok.eos_token_id, 9}
    assert eos_ids(None, tok) == {tok.eos_token_id}  # a model folder without generation_config.json
