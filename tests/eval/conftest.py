"""Shared by the eval tests: two tiny policies in run folders, a reward model, `rlhf eval` in-process."""

import json
import shutil

import pytest

from rlhf.cli import main as cli


@pytest.fixture()
def runs(tiny_model_factory, tmp_path):
    """runs/sft/final and runs/ppo/final (a differently seeded model, with a PPO log), a reward model."""
    from rlhf.core.reward import reward_model_from_lm

    shutil.copytree(tiny_model_factory("gpt2"), tmp_path / "runs" / "sft" / "final")
    shutil.copytree(tiny_model_factory("gpt2", seed=1), tmp_path / "runs" / "ppo" / "final")
    (tmp_path / "runs" / "ppo" / "log.jsonl").write_text("".join(
        json.dumps({"step": s, "objective/scores": 0.1 * s, "objective/kl": 0.5 * s}) + "\n" for s in (1, 2, 3)))
    reward_model_from_lm(str(tmp_path / "runs" / "sft" / "final")).save(tmp_path / "rm")
    (tmp_path / "judges.py").write_text(
        "def longer(prompt, a, b):\n    return 1.0 if len(a) > len(b) else 0.0 if len(a) < len(b) else 0.5\n")
    return tmp_path


def run_eval(root, out, *extra, num_prompts: int = 24):
    args = ["eval", "--out", str(out), f"models=[{root}/runs/sft/final,{root}/runs/ppo/final]",
            f"baseline={root}/runs/sft/final", "prompts_file=data/sample/prompts.jsonl", f"num_prompts={num_prompts}",
            "pretrain_file=data/sample/pretrain.jsonl", "num_pretrain=16", "max_new_tokens=12", "num_bootstrap=200",
            *extra]
    assert cli(args) == 0
    return json.loads((out / "metrics.json").read_text())
