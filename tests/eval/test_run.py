"""`rlhf eval` end to end on tiny models: the metrics, samples and plots it promises."""

import json
import math
import shutil

import pytest

from rlhf.cli import main as cli
from rlhf.data import read_records
from tests.helpers import SAMPLE


@pytest.fixture()
def runs(tiny_model_factory, tmp_path, monkeypatch):
    """runs/sft/final and runs/ppo/final (a differently seeded model, with a PPO log), a reward model."""
    from rlhf.core.reward import reward_model_from_lm

    shutil.copytree(tiny_model_factory("gpt2"), tmp_path / "runs" / "sft" / "final")
    shutil.copytree(tiny_model_factory("gpt2", seed=1), tmp_path / "runs" / "ppo" / "final")
    (tmp_path / "runs" / "ppo" / "log.jsonl").write_text("".join(
        json.dumps({"step": s, "objective/scores": 0.1 * s, "objective/kl": 0.5 * s}) + "\n" for s in (1, 2, 3)))
    reward_model_from_lm(str(tmp_path / "runs" / "sft" / "final")).save(tmp_path / "rm")
    (tmp_path / "judges.py").write_text(
        "def longer(prompt, a, b):\n    return 1.0 if len(a) > len(b) else 0.0 if len(a) < len(b) else 0.5\n")
    monkeypatch.chdir(tmp_path)  # nothing may depend on being run from the repository root
    return tmp_path


def run_eval(root, out, *extra):
    args = ["eval", "--out", str(out), f"models=[{root}/runs/sft/final,{root}/runs/ppo/final]",
            f"baseline={root}/runs/sft/final", f"prompts_file={SAMPLE}/prompts.jsonl", "num_prompts=24",
            f"pretrain_file={SAMPLE}/pretrain.jsonl", "num_pretrain=16", "max_new_tokens=12", "num_bootstrap=200",
            *extra]
    assert cli(args) == 0
    return json.loads((out / "metrics.json").read_text())


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
                f"prompts_file={SAMPLE}/prompts.jsonl"]) == 2
    assert "no judge" in capsys.readouterr().err
