"""`rlhf eval` end to end on tiny models: the metrics, samples and plots it promises."""

import math

import pytest
from tests.eval.conftest import run_eval

from rlhf.cli import main as cli
from rlhf.data import read_records


def test_eval_with_a_reward_model_judge(runs):
    m = run_eval(runs, runs / "eval", f"reward_model={runs}/rm")
    for name in ("sft", "ppo"):
        for key in ("reward", "winrate", "winrate_low", "winrate_high", "kl", "length", "perplexity"):
            assert math.isfinite(m[f"eval/{key}/{name}"]), (key, name)
    # The baseline against itself: the same random numbers give the same responses, all ties.
    assert m["eval/winrate/sft"] == m["eval/winrate_low/sft"] == m["eval/winrate_high/sft"] == 0.5
    assert m["eval/kl/sft"] == pytest.approx(0.0, abs=1e-5)  # the baseline is the reference
    assert m["eval/kl/ppo"] > 0.1  # a different model's own samples are likelier under itself
    assert m["eval/winrate_low/ppo"] <= m["eval/winrate/ppo"] <= m["eval/winrate_high/ppo"]
    samples = read_records(runs / "eval" / "samples.jsonl", "sample")
    assert len(samples) == 48 and {s["model"] for s in samples} == {"sft", "ppo"}
    by_model = {n: [s["reward"] for s in samples if s["model"] == n] for n in ("sft", "ppo")}
    assert m["eval/reward/ppo"] == pytest.approx(sum(by_model["ppo"]) / 24, abs=1e-3)
    assert (runs / "eval" / "winrate.png").stat().st_size > 1000
    assert (runs / "eval" / "training.png").stat().st_size > 1000  # from runs/ppo/log.jsonl


def test_eval_with_a_python_callable_judge(runs, monkeypatch):
    monkeypatch.syspath_prepend(str(runs))
    m = run_eval(runs, runs / "eval", "judge=judges:longer")
    samples = read_records(runs / "eval" / "samples.jsonl", "sample")
    ppo = [s["response"] for s in samples if s["model"] == "ppo"]
    sft = [s["response"] for s in samples if s["model"] == "sft"]
    by_hand = sum(1.0 if len(a) > len(b) else 0.0 if len(a) < len(b) else 0.5 for a, b in zip(ppo, sft)) / 24
    assert m["eval/winrate/ppo"] == pytest.approx(by_hand)
    assert "eval/reward/ppo" not in m  # no reward model given


def test_eval_refuses_to_run_without_a_judge(runs, capsys):
    assert cli(["eval", "--out", str(runs / "e"), f"models=[{runs}/runs/sft/final]",
                "prompts_file=data/sample/prompts.jsonl"]) == 2
    assert "no judge" in capsys.readouterr().err
