"""The decoding loop's pieces: stop handling, nucleus sampling, mixed parameters in one batch."""

from __future__ import annotations

import threading

import pytest
import torch

from rlhf.serve.engine import Delta, Engine, Finish, Job, SamplingParams, _Row, _sample, _stop_prefix_overlap


@pytest.mark.parametrize(
    "text, stops, held",
    [("hello wor", ["world"], 3), ("hello", ["world"], 0), ("abc\n", ["\n\n"], 1), ("aaa", ["aab", "aaab"], 3),
     ("xyz", [], 0)],
)
def test_stop_prefix_overlap_holds_back_a_possible_stop_start(text, stops, held):
    assert _stop_prefix_overlap(text, stops) == held


def test_top_p_keeps_only_the_nucleus():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    row = _Row(Job([0], SamplingParams(temperature=1.0, top_p=0.7), 1, print), 0, torch.Generator().manual_seed(0))
    draws = {_sample(logits, row) for _ in range(300)}
    assert draws == {0, 1}  # 0.5 < 0.7 so token 1 joins; 0.8 >= 0.7 so token 2 never does
    row.job.params.top_p = 0.4
    assert {_sample(logits, row) for _ in range(50)} == {0}  # the top token alone already reaches 0.4


@pytest.fixture(scope="module")
def engine(tiny_gpt2):
    from rlhf.core.models import load_causal_lm, load_tokenizer

    eng = Engine(load_causal_lm(str(tiny_gpt2)), load_tokenizer(str(tiny_gpt2), padding_side="left"),
                 max_batch_size=4, batch_wait_s=0.2)
    yield eng
    eng.close()


def _run(engine, jobs_spec):
    """Submit (prompt, params, n) jobs together; return per job {index: (deltas joined, Finish)}."""
    results = [dict() for _ in jobs_spec]
    deltas = [dict() for _ in jobs_spec]
    remaining = threading.Semaphore(0)

    def emitter(j):
        def emit(event):
            if isinstance(event, Delta):
                deltas[j][event.index] = deltas[j].get(event.index, "") + event.text
            elif isinstance(event, Finish):
                results[j][event.index] = (deltas[j].get(event.index, ""), event)
                remaining.release()
            else:
                raise AssertionError(event)
        return emit

    for j, (prompt, params, n) in enumerate(jobs_spec):
        engine.submit(Job(engine.encode_text(prompt), params, n, emitter(j)))
    for _ in range(sum(n for _, _, n in jobs_spec)):
        assert remaining.acquire(timeout=60)
    return results


def test_rows_with_different_parameters_share_a_batch_without_interfering(engine):
    greedy = SamplingParams(max_tokens=10, temperature=0)
    alone = _run(engine, [("hello world", greedy, 1)])[0][0][1].text
    batches = engine.stats["batches"]
    mixed = _run(engine, [
        ("hello world", greedy, 1),
        ("the quick brown", SamplingParams(max_tokens=3, temperature=1.3, top_p=0.9, seed=1), 2),
        ("yes no", SamplingParams(max_tokens=20, temperature=0.7, stop=["o"]), 1),
    ])
    assert engine.stats["batches"] == batches + 1  # all four rows in one batch
    streamed, finish = mixed[0][0]
    assert finish.text == alone and streamed == alone and finish.reason == "length"
    assert all(f.completion_tokens == 3 and f.reason == "length" for _, f in mixed[1].values())
    streamed, finish = mixed[2][0]
    assert "o" not in finish.text and streamed == finish.text


def test_a_request_wider_than_the_batch_is_refused(engine):
    with pytest.raises(ValueError, match="max batch size"):
        engine.submit(Job([1], SamplingParams(), 5, print))
