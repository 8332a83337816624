"""The guard against judging by the training proxy: a policy's training reward model, found by
path or by weights, is named in the report's first lines and in eval/judge_is_training_rm."""

import shutil
from types import SimpleNamespace

import yaml
from tests.eval.conftest import run_eval

from rlhf.core.reward import reward_model_from_lm
from rlhf.eval.guard import judged_by_its_reward_model, trained_against
from rlhf.ppo.models import record_reward


def test_the_training_reward_model_is_found_by_path_and_by_weights(runs):
    ppo = runs / "runs" / "ppo" / "final"
    record_reward(SimpleNamespace(reward_model=str(runs / "rm"), reward_fn=""), ppo)
    shutil.copytree(runs / "rm", runs / "copied" / "rm")
    reward_model_from_lm(str(runs / "runs" / "sft" / "final"), seed=5).save(runs / "other-rm")
    hashes = {}
    assert judged_by_its_reward_model(str(runs / "rm"), str(ppo), hashes) == "same path"
    assert judged_by_its_reward_model(str(runs / "copied" / "rm"), str(ppo), hashes) == "same weights"
    assert judged_by_its_reward_model(str(runs / "other-rm"), str(ppo), hashes) == ""  # another head: other weights
    assert judged_by_its_reward_model(str(runs / "rm"), str(runs / "runs" / "sft" / "final"), hashes) == ""  # no PPO run
    record_reward(SimpleNamespace(reward_model=str(runs / "rm"), reward_fn="my:rule"), ppo)
    assert judged_by_its_reward_model(str(runs / "rm"), str(ppo), hashes) == ""  # trained on a rule, not the RM


def test_a_run_from_before_the_record_is_traced_through_its_config(runs, monkeypatch):
    monkeypatch.chdir(runs)  # PPO configs hold paths relative to where the run started
    (runs / "runs" / "ppo" / "config.yaml").write_text(yaml.safe_dump({"policy": "runs/sft/final", "reward_model": "rm"}))
    record = trained_against(runs / "runs" / "ppo" / "final")
    assert record == {"reward_model": str((runs / "rm").resolve()), "reward_model_sha256": None, "reward_fn": ""}
    assert judged_by_its_reward_model("rm", str(runs / "runs" / "ppo" / "final"), {}) == "same path"


def test_eval_says_first_when_the_judge_is_the_training_reward_model(runs, monkeypatch):
    monkeypatch.syspath_prepend(str(runs))
    record_reward(SimpleNamespace(reward_model=str(runs / "rm"), reward_fn=""), runs / "runs" / "ppo" / "final")
    m = run_eval(runs, runs / "eval", f"reward_model={runs}/rm", "pretrain_file=", num_prompts=4)
    assert m["eval/judge_is_training_rm"] == 1.0
    assert m["eval/judge_is_training_rm/ppo"] == 1.0 and m["eval/judge_is_training_rm/sft"] == 0.0
    assert m["eval/reward_is_training_rm/ppo"] == 1.0
    lines = (runs / "eval" / "report.md").read_text().splitlines()
    assert lines[2].startswith("> **Warning: the judge is the reward model that ppo was trained against.**")
    assert any("is the score PPO maximised" in line for line in lines[:6])
    m = run_eval(runs, runs / "eval2", f"reward_model={runs}/rm", "judge=judges:longer", "pretrain_file=", num_prompts=4)
    assert m["eval/judge_is_training_rm"] == 0.0 and m["eval/reward_is_training_rm/ppo"] == 1.0
    assert "Warning" not in (runs / "eval2" / "report.md").read_text().splitlines()[2]


def test_a_policy_trained_on_an_ensemble_is_judged_by_its_reward_when_the_judge_is_a_member(runs):
    ppo = runs / "runs" / "ppo" / "final"
    reward_model_from_lm(str(runs / "runs" / "sft" / "final"), seed=5).save(runs / "other-rm")
    reward_model_from_lm(str(runs / "runs" / "sft" / "final"), seed=6).save(runs / "third-rm")
    record_reward(SimpleNamespace(reward_model=f"{runs / 'rm'},{runs / 'other-rm'}", reward_fn=""), ppo)
    assert trained_against(ppo)["reward_model_sha256"].count(",") == 1  # one hash per member
    shutil.copytree(runs / "other-rm", runs / "copied-other")
    hashes = {}
    assert judged_by_its_reward_model(str(runs / "rm"), str(ppo), hashes) == "same path"
    assert judged_by_its_reward_model(str(runs / "copied-other"), str(ppo), hashes) == "same weights"
    assert judged_by_its_reward_model(f"{runs / 'third-rm'},{runs / 'other-rm'}", str(ppo), hashes) == "same path"
    assert judged_by_its_reward_model(str(runs / "third-rm"), str(ppo), hashes) == ""


def test_eval_takes_an_ensemble_as_its_reward_model_and_judge(runs, monkeypatch):
    monkeypatch.syspath_prepend(str(runs))
    reward_model_from_lm(str(runs / "runs" / "sft" / "final"), seed=7).save(runs / "member-b")
    record_reward(SimpleNamespace(reward_model=str(runs / "rm"), reward_fn=""), runs / "runs" / "ppo" / "final")
    m = run_eval(runs, runs / "eval-ensemble", f"reward_model={runs}/member-b,{runs}/rm", "pretrain_file=", num_prompts=4)
    assert m["eval/judge_is_training_rm/ppo"] == 1.0 and m["eval/judge_is_training_rm/sft"] == 0.0  # rm is a member
