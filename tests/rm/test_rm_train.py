"""What reward-model training achieves on a learnable hidden rule, and its one-line loader."""

import json

import pytest

import rlhf
from rlhf.rm.train import main as rm_main
from tests.helpers import SAMPLE, count_side_by_side, max_weight_diff, rm_config, two_torch_threads


def test_rm_learns_hidden_rule_and_normalises(tiny_gpt2, tmp_path):
    metrics = rm_main(rm_config(tiny_gpt2), tmp_path / "rm")
    assert metrics["rm/eval_accuracy"] > 0.9  # the courtesy rule of scripts/make_sample_data.py
    assert metrics["rm/comparisons_per_s"] > 0
    history = [json.loads(l) for l in (tmp_path / "rm" / "log.jsonl").read_text().splitlines()]
    acc = [h["train/accuracy"] for h in history if "train/accuracy" in h]
    assert acc[-1] > acc[0]
    rm = rlhf.load_reward_model(tmp_path / "rm" / "final")
    demos = [json.loads(l) for l in (SAMPLE / "demonstrations_valid.jsonl").read_text().splitlines()]
    scores = rm.score([d["prompt"] for d in demos], [d["response"] for d in demos])
    assert sum(scores) / len(scores) == pytest.approx(0.0, abs=1e-3)  # the reference set scores mean 0
    polite, rude = rm.score(["Say hello to Ada."] * 2, ["please Hello, Ada! thanks", "ugh Hello, Ada! whatever"])
    assert polite > rude


def test_public_pairwise_file_trains_as_k2(tiny_gpt2, tmp_path):
    from rlhf.data import read_records

    metrics = rm_main(rm_config(tiny_gpt2, train_file=str(SAMPLE / "pairwise.jsonl"), eval_file="", norm_file="",
                                epochs=1), tmp_path / "pw")
    history = [json.loads(l) for l in (tmp_path / "pw" / "log.jsonl").read_text().splitlines()]
    # {"prompt", "chosen", "rejected"} is a ranking of K = 2: one pair per prompt, so every logged window
    # trained as many comparisons as rankings
    assert all(h["rm/comparisons_per_s"] == pytest.approx(h["rm/rankings_per_s"]) for h in history)
    # Without norm_file the offset is the training responses' mean raw score: they now score mean 0.
    records = read_records(SAMPLE / "pairwise.jsonl", "comparison")
    rm = rlhf.load_reward_model(tmp_path / "pw" / "final")
    scores = rm.score([r["prompt"] for r in records for _ in r["responses"]],
                      [x for r in records for x in r["responses"]], max_length=96)
    assert abs(metrics["rm/offset"]) > 1e-3  # a real shift, not a no-op
    assert sum(scores) / len(scores) == pytest.approx(0.0, abs=1e-3)


def test_side_by_side_halves_equal_one_backward(tiny_gpt2, tmp_path, monkeypatch):
    """Two halves of whole prompts on a core each (core/streams.py), gradients summed: the same training as
    one backward over the micro-batch, up to float reordering."""
    calls = count_side_by_side(monkeypatch)
    with two_torch_threads():
        halves = rm_main(rm_config(tiny_gpt2, epochs=1, eval_file="", norm_file=""), tmp_path / "halves")
        whole = rm_main(rm_config(tiny_gpt2, epochs=1, eval_file="", norm_file="", side_by_side=False), tmp_path / "whole")
    assert calls and set(calls) == {2}
    # Adam amplifies float reordering here: the same run with 1 thread instead of 2 already differs by 1.7e-4.
    assert max_weight_diff(tmp_path / "halves/final/model.safetensors", tmp_path / "whole/final/model.safetensors") < 1e-3
    assert halves["train/loss"] == pytest.approx(whole["train/loss"], rel=1e-5)


def test_folders_separated_by_commas_load_as_an_ensemble_scoring_their_mean(tiny_gpt2, tmp_path):
    import torch

    from rlhf.core.reward import RewardEnsemble, reward_model_from_lm, reward_model_paths

    # Heads that ignore the text: member a scores 1.0; member b scores -3.0 - its offset 0.5 = -3.5.
    for name, bias, offset in (("a", 1.0, 0.0), ("b", -3.0, 0.5)):
        rm = reward_model_from_lm(tiny_gpt2, seed=1)
        with torch.no_grad():
            rm.head.weight.zero_()
            rm.head.bias.fill_(bias)
            rm.offset.fill_(offset)
        rm.save(tmp_path / name)
    ensemble = rlhf.load_reward_model(f"{tmp_path / 'a'}, {tmp_path / 'b'}")
    assert isinstance(ensemble, RewardEnsemble) and len(ensemble.members) == 2
    assert ensemble.score(["Q?", "Say hi."], ["A.", "hi"]) == pytest.approx([-1.25, -1.25])  # (1.0 - 3.5) / 2
    ids = torch.tensor([[5, 6, 7]])
    assert ensemble.values(ids, torch.ones_like(ids))[0].tolist() == pytest.approx([-1.25] * 3)
    assert rlhf.load_reward_model(tmp_path / "b").score(["Q?"], ["A."]) == pytest.approx([-3.5])  # one folder: one model
    with pytest.raises(ValueError, match="no reward model folder"):
        reward_model_paths(" , ")
