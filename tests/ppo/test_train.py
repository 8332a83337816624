"""What PPO training achieves and what must not change: reward rises while the adaptive
controller holds KL near its target, ptx limits the alignment tax, resume after SIGKILL
equals an uninterrupted run, and 2 processes equal 1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlhf.config import load_config
from rlhf.ppo.config import PPOConfig
from rlhf.ppo.train import main
from tests.helpers import count_side_by_side, two_torch_threads

pytestmark = pytest.mark.slow
VENV_BIN = Path(sys.executable).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def world_args(world: dict, **over) -> list[str]:
    args = {**world, "batch_size": 16, "mini_batch_size": 8, "micro_batch_size": 4, "max_new_tokens": 6,
            "ppo_epochs": 2, "lr": 5e-3, "min_lr_ratio": 1.0, "save_steps": 0, "total_episodes": 48, **over}
    return [f"{k}={v}" for k, v in args.items()]


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "final" / "model.safetensors"))


def assert_same_weights(a: Path, b: Path, atol: float) -> None:
    wa, wb = final_weights(a), final_weights(b)
    assert wa.keys() == wb.keys()
    worst = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    assert worst <= atol, f"final weights differ by {worst}"


def test_ppo_raises_reward_while_the_kl_controller_steers_beta(ppo_world, tmp_path):
    target = 4.0
    config = load_config(PPOConfig, None, world_args(
        ppo_world, total_episodes=192, micro_batch_size=8, max_new_tokens=8, ppo_epochs=4, kl_coef=0.05,
        kl_target=target, kl_horizon=16))
    metrics = main(config, str(tmp_path / "run"))
    history = [json.loads(l) for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert metrics["ppo/reward_last"] > metrics["ppo/reward_first"] + 0.25, metrics
    # Every iteration applies Ziegler et al.'s law (2019, section 2.2) to its own rollout's KL: beta times
    # 1 + clip(KL / target - 1, +-0.2) x 16 episodes / horizon 16.
    for h in history:
        error = min(max(h["objective/kl"] / target - 1, -0.2), 0.2)
        assert h["objective/kl_coef_next"] == pytest.approx(h["objective/kl_coef"] * (1 + error), rel=1e-12)
    # So beta falls while KL is under the target, KL rises to it, and beta then rises. The law holds KL at the
    # target only on a plant that holds still (tests/ppo/test_loss.py): here the policy keeps moving, and the 6
    # to 8 iterations under the target take beta to a quarter or a fifth of its start, which 20% a step cannot
    # undo in the 4 to 6 left. The last third's mean KL measured 7.1, 7.8, 9.0 and 12.7 for seeds 0-3 on one CPU (11.2 for
    # seed 0 on another), so no band around the target is asserted.
    betas, kls = [h["objective/kl_coef"] for h in history], [h["objective/kl"] for h in history]
    assert min(betas) < 0.05 and max(kls) > target and history[-1]["objective/kl_coef_next"] > min(betas), (betas, kls)
    assert 0 <= metrics["ppo/padding_frac"] < 0.5
    for key in ("objective/kl", "ppo/episodes_per_s", "ppo/policy/clipfrac", "ppo/value/explained_variance",
                "time/generation_frac", "objective/entropy", "ppo/eos_rate"):
        assert key in metrics
    samples = [json.loads(l) for l in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert {"prompt", "response", "reward", "kl", "step"} <= samples[-1].keys()
    assert list((tmp_path / "run" / "logs").glob("events.out.tfevents.*"))


def pretrain_nll(model_dir: str, pretrain_file: str) -> float:
    import math

    from rlhf.core.models import load_causal_lm, load_tokenizer
    from rlhf.eval.run import perplexity
    from rlhf.data.pretraining import load_pretrain

    tok = load_tokenizer(model_dir)
    docs = load_pretrain(pretrain_file, tok, 64)
    return math.log(perplexity(load_causal_lm(model_dir).eval(), docs, tok.pad_token_id, 32))


def test_ptx_limits_the_rise_of_the_pretraining_loss(ppo_world, tmp_path):
    start = pretrain_nll(ppo_world["policy"], ppo_world["pretrain_file"])
    rises = {}
    for ptx_coef in (0.0, 1.0):
        config = load_config(PPOConfig, None, world_args(ppo_world, total_episodes=96, ptx_coef=ptx_coef, ptx_batch_size=8))
        main(config, str(tmp_path / f"ptx{ptx_coef}"))
        rises[ptx_coef] = pretrain_nll(str(tmp_path / f"ptx{ptx_coef}" / "final"), ppo_world["pretrain_file"]) - start
    # The claim: with the ptx term the pretraining loss rises less than without it (here it
    # falls). Which way plain PPO drifts on this tiny world is not fixed: float-level changes to the
    # model (e.g. the fused GELU kernel) moved it from +0.1 to -0.1 nats, so only the gap is asserted.
    assert rises[1.0] < rises[0.0] - 0.05, rises


def cli(out: Path, args: list[str], resume: bool = False) -> subprocess.Popen:
    cmd = [str(VENV_BIN / "rlhf"), "ppo", "--out", str(out), *args] + (["--resume"] if resume else [])
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_resume_after_sigkill_equals_an_uninterrupted_run(ppo_world, tmp_path):
    args = world_args(ppo_world, total_episodes=64, save_steps=1, ptx_coef=0.5, ptx_batch_size=4, pretrain_file=ppo_world["pretrain_file"])
    whole = cli(tmp_path / "whole", args)
    killed = cli(tmp_path / "killed", args)
    deadline = time.time() + 240
    while not list((tmp_path / "killed" / "checkpoints").glob("step-*/state.json")):
        assert killed.poll() is None, killed.stderr.read()
        assert time.time() < deadline
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "killed" / "final").exists(), "the run finished before the kill: make it longer"
    resumed = cli(tmp_path / "killed", args, resume=True)
    for proc in (whole, resumed):
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert_same_weights(tmp_path / "whole", tmp_path / "killed", atol=0.0)
    steps = [json.loads(l)["step"] for l in (tmp_path / "killed" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


@pytest.mark.parametrize("reward", ["model", "fn"])
def test_two_processes_equal_one(ppo_world, tmp_path, reward):
    from tests.helpers import env, rlhf_cmd

    fn = {"reward_fn": "tests.ppo.test_train:letter_reward"} if reward == "fn" else {}  # each process scores its own
    args = world_args(ppo_world, total_episodes=32, ptx_coef=0.5, ptx_batch_size=4, pretrain_file=ppo_world["pretrain_file"],
                      **fn)
    two = subprocess.Popen(rlhf_cmd("ppo", "--out", str(tmp_path / "two"), *args, processes=2), env=env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    one = cli(tmp_path / "one", args)
    logs = {}
    for name, proc in (("one", one), ("two", two)):
        assert proc.wait(timeout=300) == 0, proc.stderr.read()[-3000:]
        logs[name] = proc.stderr.read()
    assert "on each of 2 processes" in logs["two"] and "on each of 1 processes" in logs["one"]
    # Not bit-equal: each process groups its own episodes by length (group_by_length), so the forwards
    # have other shapes and round differently. Changing micro_batch_size alone moves these weights by
    # 4e-5; a lost micro-batch or ptx chunk moves them by ~lr (5e-3).
    assert_same_weights(tmp_path / "one", tmp_path / "two", atol=1e-4)
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    for key in ("objective/scores", "objective/kl", "ppo/policy/loss", "ppo/ptx/loss"):
        assert m1[key] == pytest.approx(m2[key], rel=1e-4, abs=1e-6), key


def test_lora_policy_uses_itself_without_the_adapter_as_reference(ppo_world, tmp_path, monkeypatch):
    from rlhf.core.models import load_causal_lm
    from rlhf.ppo import models as ppo_models

    loaded = []

    def counting(*args, **kwargs):
        loaded.append(args[0])
        return load_causal_lm(*args, **kwargs)

    monkeypatch.setattr(ppo_models, "load_causal_lm", counting)  # where the policy and reference are loaded
    config = load_config(PPOConfig, None, world_args(ppo_world, total_episodes=32, **{"lora.r": 4, "lr": 1e-2}))
    main(config, str(tmp_path / "lora"))
    assert loaded == [ppo_world["policy"]]  # one copy of the policy weights: no separate reference
    history = [json.loads(l) for l in (tmp_path / "lora" / "log.jsonl").read_text().splitlines()]
    assert abs(history[0]["objective/kl"]) < 1e-4  # LoRA B starts at 0: policy == reference
    assert history[1]["objective/kl"] != 0.0  # the adapter trained, the reference did not move
    merged = load_causal_lm(str(tmp_path / "lora" / "final"))  # a plain transformers folder, adapter merged
    base = load_causal_lm(ppo_world["policy"])
    assert not all(torch.equal(a, b) for a, b in zip(merged.state_dict().values(), base.state_dict().values()))


def test_early_stop_on_approximate_kl(ppo_world, tmp_path):
    # The first mini-batch sees the rollout weights (approx KL exactly 0); the second sees the
    # first step's change, passes the tiny threshold, and ends the batch: 2 of 2 x 4 mini-batches.
    config = load_config(PPOConfig, None, world_args(ppo_world, total_episodes=32, ppo_epochs=4, early_stop_kl=1e-9))
    main(config, str(tmp_path / "run"))
    history = [json.loads(l) for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [h["ppo/epochs"] for h in history] == [1.0, 1.0]


def test_final_records_the_reward_model_it_was_trained_against(ppo_world, tmp_path):
    """rlhf eval reads this to refuse to pass the training reward model's verdict off as an evaluation."""
    from rlhf.core.io import weights_sha256

    main(load_config(PPOConfig, None, world_args(ppo_world, total_episodes=16)), str(tmp_path / "run"))
    record = json.loads((tmp_path / "run" / "final" / "trained_against.json").read_text())
    assert record["reward_model"] == str(Path(ppo_world["reward_model"]).resolve()) and record["reward_fn"] == ""
    assert record["reward_model_sha256"] == weights_sha256(ppo_world["reward_model"])
    assert len(record["reward_model_sha256"]) == 64


def test_an_ensemble_rewards_the_mean_of_its_members_and_records_each(ppo_world, tmp_path):
    """reward_model=a,b: the first iteration's episodes (the same for every reward: same policy, same seed) score
    the mean of what a and b score them; final/ records both members for rlhf eval's guard."""
    from tests.ppo.conftest import train_rule_reward_model

    other = train_rule_reward_model(Path(ppo_world["policy"]), tmp_path / "rm-b", steps=40, seed=1)
    scores = {}
    for name, rm in (("a", ppo_world["reward_model"]), ("b", str(other)), ("ab", f"{ppo_world['reward_model']},{other}")):
        m = main(load_config(PPOConfig, None, world_args(ppo_world, total_episodes=16, reward_model=rm)), str(tmp_path / name))
        scores[name] = m["ppo/reward_first"]
    assert abs(scores["a"] - scores["b"]) > 0.05  # two members that disagree, or the mean would prove nothing
    assert scores["ab"] == pytest.approx((scores["a"] + scores["b"]) / 2, abs=1e-5)
    record = json.loads((tmp_path / "ab" / "final" / "trained_against.json").read_text())
    assert record["reward_model"].split(",") == [str(Path(ppo_world["reward_model"]).resolve()), str(other.resolve())]
    assert [len(h) for h in record["reward_model_sha256"].split(",")] == [64, 64]


def test_nan_loss_stops_the_run(ppo_world, tmp_path, monkeypatch):
    from rlhf.core.train import NonFiniteLossError
    from rlhf.ppo import train as ppo_train

    real = ppo_train.minibatch_loss
    monkeypatch.setattr(ppo_train, "minibatch_loss", lambda *a, **k: (real(*a, **k)[0] * float("nan"), real(*a, **k)[1]))
    config = load_config(PPOConfig, None, world_args(ppo_world, total_episodes=16))
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written yet"):
        main(config, str(tmp_path / "run"))
    assert not (tmp_path / "run" / "final").exists()


def test_policy_and_value_side_by_side_equal_one_after_the_other(ppo_world, tmp_path, monkeypatch):
    """On a CPU with 2 threads the policy and value halves run on a core each (core/streams.py); the
    training they do is the joint module's, up to float reordering between 1- and 2-thread kernels."""
    calls = count_side_by_side(monkeypatch)
    with two_torch_threads():
        runs = {}
        for flag in (True, False):
            config = load_config(PPOConfig, None, world_args(ppo_world, total_episodes=32, side_by_side=flag))
            runs[flag] = main(config, str(tmp_path / f"run-{flag}"))
    # 2 iterations, each: scoring once, then 2 epochs x 2 mini-batches of training
    assert calls == [2] * 10, calls
    for key in ("ppo/reward_last", "objective/kl", "ppo/policy/loss", "ppo/value/loss"):
        assert abs(runs[True][key] - runs[False][key]) <= 1e-4 * max(1.0, abs(runs[False][key])), key
    assert_same_weights(tmp_path / "run-True", tmp_path / "run-False", atol=1e-4)


def test_value_warmup_trains_the_value_model_alone_first(ppo_world, tmp_path):
    config = load_config(PPOConfig, None, world_args(ppo_world, value_warmup_iterations=1, save_steps=1, keep_checkpoints=3))
    main(config, str(tmp_path / "run"))
    start = load_file(str(Path(ppo_world["policy"]) / "model.safetensors"))
    rm_body = load_file(str(Path(ppo_world["reward_model"]) / "model.safetensors"))

    def moved(weights: dict, reference: dict) -> float:
        common = weights.keys() & reference.keys()
        assert common
        return max(float((weights[k] - reference[k]).abs().max()) for k in common)

    ckpts = sorted(p.parent for p in (tmp_path / "run").rglob("policy.safetensors"))
    assert len(ckpts) == 2  # after iterations 1 and 2 (the last one writes final/ instead)
    after_warmup, after_two = ckpts
    assert moved(load_file(str(after_warmup / "policy.safetensors")), start) == 0.0
    assert moved({k.removeprefix("body."): v for k, v in load_file(str(after_warmup / "value.safetensors")).items()},
                 rm_body) > 1e-4
    assert moved(load_file(str(after_two / "policy.safetensors")), start) > 1e-4
    history = [json.loads(l) for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert history[0]["ppo/policy/clipfrac"] == 0 and 0 < history[0]["ppo/value/loss"] < 10


REWARD_CALLS: list[tuple[list[dict], list[str]]] = []


def recording_reward(records: list[dict], responses: list[str]) -> list[float]:
    REWARD_CALLS.append((records, responses))
    return [0.1 * (len(r) % 7) for r in responses]


def letter_reward(records: list[dict], responses: list[str]) -> list[float]:
    """A rule the policy can learn from text alone: 4 x the share of the letter 'e' among the characters."""
    return [4.0 * r.count("e") / max(len(r), 1) for r in responses]


def test_reward_fn_scores_each_episode_in_place_of_the_reward_model(ppo_world, tmp_path):
    REWARD_CALLS.clear()
    config = load_config(PPOConfig, None, world_args(ppo_world, total_episodes=32,
                                                     reward_fn="tests.ppo.test_train:recording_reward"))
    main(config, str(tmp_path / "run"))
    assert [len(records) for records, _ in REWARD_CALLS] == [16, 16]  # one call per iteration, every episode
    prompts = [json.loads(line) for line in Path(ppo_world["prompts_file"]).read_text().splitlines()]
    by_id = {p["id"]: p for p in prompts}
    assert all(record == by_id[record["id"]] for records, _ in REWARD_CALLS for record in records)  # whole records
    history = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    for row, (_, texts) in zip(history, REWARD_CALLS):
        assert row["objective/scores"] == pytest.approx(sum(0.1 * (len(t) % 7) for t in texts) / len(texts), abs=1e-6)


def test_ppo_learns_a_rule_given_as_a_python_reward(ppo_world, tmp_path):
    config = load_config(PPOConfig, None, world_args(
        ppo_world, total_episodes=192, micro_batch_size=8, max_new_tokens=8, ppo_epochs=4, kl_coef=0.02,
        reward_fn="tests.ppo.test_train:letter_reward"))
    metrics = main(config, str(tmp_path / "run"))
    assert metrics["ppo/reward_last"] > metrics["ppo/reward_first"] + 0.25, metrics


def test_reward_fn_errors_name_the_setting(ppo_world, tmp_path):
    from rlhf.config import ConfigError

    with pytest.raises(ConfigError, match="module:function"):
        load_config(PPOConfig, None, world_args(ppo_world, reward_fn="no_colon_here")).validate()
    with pytest.raises(ConfigError, match="reward_fn=tests.ppo.test_train:missing"):
        main(load_config(PPOConfig, None, world_args(ppo_world, reward_fn="tests.ppo.test_train:missing")),
             str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="returned 1 scores for 16 responses"):
        main(load_config(PPOConfig, None, world_args(ppo_world, reward_fn="tests.ppo.test_train:one_score")),
             str(tmp_path / "short"))


def one_score(records: list[dict], responses: list[str]) -> list[float]:
    return [1.0]
