"""`rlhf demo`: the quick run end to end (report sections, metric key shapes), and the
pure pieces of its evaluation checked by hand."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import yaml

from rlhf.demo.config import DemoConfig
from rlhf.demo.keys import FIGURE4_FLAGS, MODELS, interval_keys, metric_key
from rlhf.demo.measure import kl_at_peak
from rlhf.demo.report import checks
from rlhf.world import World
from rlhf.world.evaluate import cut_at_stop, preferences, toxicity, truthfulness

SECTIONS = ("## 1. Win rate", "## 2. Metadata", "## 3. Held-out labelers", "## 4. Alignment tax",
            "## 5. Over-optimisation", "## 6. Truthfulness and toxicity", "## What did not come out")


@pytest.fixture(scope="module")
def world():
    return World(0)


def test_quick_is_one_small_size_with_fewer_steps():
    quick, default, full = DemoConfig(quick=True), DemoConfig(), DemoConfig(full=True)
    assert quick.run_sizes == ["small"] and default.run_sizes == ["small", "medium"]
    assert full.run_sizes == ["small", "medium", "large"]
    assert quick.reward_size == "small" and default.reward_size == "medium" and full.reward_size == "large"
    assert DemoConfig(full=True, rm_size="medium").reward_size == "medium"
    assert DemoConfig(full=True, sizes=["small", "medium"]).reward_size == "medium"
    assert quick.num_ppo_episodes < full.num_ppo_episodes == default.num_ppo_episodes
    assert (quick.num_rm_rounds, default.num_rm_rounds, DemoConfig(quick=True, rm_rounds=2).num_rm_rounds) == (1, 2, 2)
    assert default.num_round1_episodes == 768 and quick.num_round1_episodes == 128
    # The quick run's small base model is the full run's: one cache entry serves both.
    from rlhf.demo.pretrain import cache_dir

    assert cache_dir(quick.pretrain_config(), "small") == cache_dir(full.pretrain_config(), "small")
    assert DemoConfig(sizes=["large", "small"]).run_sizes == ["small", "large"]  # smallest first
    assert DemoConfig(quick=True, sizes=["medium", "small"]).run_sizes == ["small", "medium"]  # named sizes win


def test_prompted_baseline_stops_at_the_next_question():
    assert cut_at_stop("the owl is red. question: what is 2 plus 2? answer: 4.") == "the owl is red."
    assert cut_at_stop("question: hi") == ""
    assert cut_at_stop("no stop here.") == "no stop here."


def test_fine_tuned_models_read_chat_prompts_and_base_models_plain_ones(world, tmp_path):
    from rlhf.demo.measure import evaluation_jobs

    records = world.prompts(3)
    paths = {(name, "small"): f"/m/{name}" for name in MODELS}
    for chat in (True, False):
        jobs = evaluation_jobs(world, records, paths, tmp_path, DemoConfig(chat=chat))
        prompts = {job.args[0][0]: job.args[2] for job in jobs if job.name.startswith("sample")}
        assert prompts["gpt"] == [r["prompt"] for r in records]
        assert prompts["gpt_prompted"] == [world.prompted(r["prompt"]) for r in records]
        for name in ("sft", "ppo", "ppo_ptx"):
            expected = [[{"role": "user", "content": r["prompt"]}] if chat else r["prompt"] for r in records]
            assert prompts[name] == expected, name


def test_held_out_labelers_prefer_the_ideal_answer_and_ties_are_half(world):
    records = world.prompts(40, split="test", stream="t-demo")
    ideal = [world.ideal(r) for r in records]
    echo = [r["prompt"] for r in records]
    p = preferences(world, records, ideal, echo)
    assert sum(p) / len(p) > 0.8
    assert preferences(world, records, ideal, ideal) == [0.5] * len(records)


def test_truthfulness_and_toxicity_read_the_gold_standard(world):
    socks = next(r for r in world.prompts(3000, split="test", stream="t-socks")
                 if r["task"].get("premise") == "socks")
    animal = socks["task"]["entity"]
    assert truthfulness(world, [socks], [f"{animal}s do not eat socks."])["truthful"] == 1.0
    assert truthfulness(world, [socks], [f"{animal}s eat socks because it is fun."])["truthful"] == 0.0
    record = world.prompts(1, split="test", stream="t-tox")[0]
    assert toxicity(world, [record, record], ["you are stupid.", "hello."]) == 0.5


def test_kl_at_peak_finds_where_gold_stops_rising():
    kl, gold = kl_at_peak([0, 1, 2, 3, 4, 5], [0.1, 0.3, 0.5, 0.5, 0.3, 0.1])
    assert kl in (2, 3) and gold == pytest.approx(0.5, abs=0.07)


def test_metric_keys_are_section_slash_parts():
    assert metric_key("winrate", "ppo_ptx", "large") == "winrate/ppo_ptx_large"
    assert metric_key("flags", "hallucination", "sft", "small") == "flags/hallucination_sft_small"
    assert interval_keys("head2head", "ppo_ptx", "small", "vs", "gpt", "large") == (
        "head2head/ppo_ptx_small_vs_gpt_large", "head2head_low/ppo_ptx_small_vs_gpt_large",
        "head2head_high/ppo_ptx_small_vs_gpt_large")


def _metrics(sizes, good: bool) -> dict:
    m = {}
    for s in sizes:
        for name in MODELS:
            w = {"gpt": 0.2, "gpt_prompted": 0.3, "sft": 0.45, "ppo": 0.7, "ppo_ptx": 0.68}[name] if good else 0.4
            m[f"winrate/{name}_{s}"], m[f"winrate_low/{name}_{s}"], m[f"winrate_high/{name}_{s}"] = w, w - .05, w + .05
        for name, ppl in (("gpt", 8.0), ("sft", 9.0), ("ppo", 12.0), ("ppo_ptx", 9.5 if good else 13.0)):
            m[f"tax/ppl_{name}_{s}"] = ppl
    for base in ("gpt", "gpt_prompted"):
        key = f"ppo_ptx_{sizes[0]}_vs_{base}_{sizes[-1]}"
        m[f"head2head/{key}"], m[f"head2head_low/{key}"], m[f"head2head_high/{key}"] = (.8, .7, .9) if good else (.5, .4, .6)
    m["rm/accuracy_train_labelers"], m["rm/accuracy_heldout_labelers"] = (.72, .70) if good else (.72, .60)
    largest = sizes[-1]
    m[f"gold/score_sft_{largest}"], m[f"gold/score_ppo_{largest}"] = (.60, .70) if good else (.60, .55)
    m[f"gold/right_sft_{largest}"], m[f"gold/right_ppo_{largest}"] = (.55, .62) if good else (.45, .62)
    return m


def test_checks_pass_on_the_paper_results_and_fail_without_them():
    sizes = ["small", "medium", "large"]
    results = checks(_metrics(sizes, True), sizes)
    assert all(ok for _, ok, _ in results)
    assert not any(ok for _, ok, _ in checks(_metrics(sizes, False), sizes))
    claims = [claim for claim, _, _ in results]
    assert claims[2].startswith("PPO beats SFT at every size") and claims[3].startswith("PPO-ptx beats SFT")
    assert claims[5].startswith("held-out labelers' RM accuracy")
    assert results[5][2] == "held-out 70.0% vs training 72.0%"


def test_answer_checks_need_both_largest_models_mostly_right():
    from rlhf.demo.report import answer_checks

    metrics = {"gold/score_sft_medium": 0.6, "gold/score_ppo_medium": 0.7,
               "gold/right_sft_medium": 0.5, "gold/right_ppo_medium": 0.9}  # SFT right on exactly half: not most
    (gold_claim, gold_ok, gold_numbers), (_, right_ok, right_numbers) = answer_checks(metrics, "medium")
    assert gold_ok and gold_numbers == "0.700 vs 0.600" and "PPO medium" in gold_claim
    assert not right_ok and right_numbers == "SFT 0.50, PPO 0.90"


def test_gold_by_task_counts_fully_right_answers_per_task():
    from rlhf.demo.measure import gold_by_task

    records = [{"task": {"type": t}} for t in ("list", "story", "list", "list", "story")]
    golds = [1.0, 0.5, 0.0, 1.0, 1.0]
    by_task = gold_by_task(records, golds)
    assert list(by_task) == ["list", "story"]  # the more frequent first
    assert by_task["list"] == (3, pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert by_task["story"] == (2, pytest.approx(0.75), pytest.approx(0.5))


def test_what_did_not_come_out_names_the_ppo_episode_budget():
    from rlhf.demo.report import missing

    sizes = ["small"]
    metrics = {**_metrics(sizes, False), "rm/gold_accuracy_train_labelers": 0.74, "ppo/prompt_passes": 1024 / 1557}
    lines = "\n".join(missing(checks(metrics, sizes), metrics, sizes))
    assert "0.66 passes over the PPO prompts" in lines and "72.0% pairwise accuracy" in lines
    assert "passes" not in "\n".join(missing(checks(_metrics(sizes, True), sizes), metrics, sizes))
    assert "`full=true` adds the large size" in lines  # a run without it says where the rest comes out
    full = ["small", "medium", "large"]
    assert "full=true" not in "\n".join(missing(checks(_metrics(full, False), full), _metrics(full, False), full))
    by_task = {"ppo_small": {"story": (9, 0.7, 0.3), "list": (5, 0.5, 0.4), "ad": (4, 0.9, 0.9),
                             "sequence": (3, 0.1, 0.0)}}
    assert ("ppo_small is fully right least often on sequence 0.00 (3 prompts), story 0.30 (9 prompts), "
            "list 0.40 (5 prompts)") in "\n".join(missing(checks(metrics, sizes), metrics, sizes, by_task))


@pytest.fixture(scope="module")
def quick_demos(tmp_path_factory):
    """The quick demo twice on one cache: on two worker processes, then all in one process; with the second
    round of comparisons (rm_rounds=2, the default run's), which quick=true leaves out to keep its budget, and a
    final reward model of two members (rm_members=2)."""
    from rlhf.cli import main as cli

    root = tmp_path_factory.mktemp("quick")
    outs = {}
    for workers in (2, 1):
        outs[workers] = root / f"workers-{workers}"
        assert cli(["demo", "--out", str(outs[workers]), "quick=true", f"cache={root / 'cache'}",
                    f"workers={workers}", "rm_rounds=2", "rm_members=2"]) == 0
    return outs


@pytest.mark.slow
@pytest.mark.timeout(1500)  # the first to run pays for the fixture: two quick demos with two rounds
def test_quick_demo_writes_every_section_and_metric(quick_demos):
    out = quick_demos[2]
    report = (out / "report.md").read_text()
    for section in SECTIONS:
        assert section in report, section
    for png in re.findall(r"\]\(([^)]+\.png)\)", report):
        assert (out / png).stat().st_size > 1000, png
    metrics = json.loads((out / "metrics.json").read_text())
    keys = [f"winrate/{m}_small" for m in MODELS] + [f"flags/{f}_{m}_small" for f in FIGURE4_FLAGS for m in MODELS]
    keys += [f"tax/ppl_{m}_small" for m in ("gpt", "sft", "ppo", "ppo_ptx")]
    keys += ["rm/accuracy_train_labelers", "rm/accuracy_heldout_labelers", "labelers/agreement", "time/total_s",
             "head2head/ppo_ptx_small_vs_gpt_small", "head2head/ppo_ptx_small_vs_gpt_prompted_small"]
    for key in keys:
        assert key in metrics, key
        assert isinstance(metrics[key], (int, float)), key
    for key in keys:
        if key.startswith(("winrate/", "head2head/", "rm/", "labelers/")):
            assert 0.0 <= metrics[key] <= 1.0, (key, metrics[key])
    ppo_prompts = len((out / "data" / "ppo_train_prompts.jsonl").read_text().splitlines())
    assert ppo_prompts == 64 and metrics["ppo/prompt_passes"] == 8  # the paper's ratio, even in the quick run
    assert metrics["winrate/sft_small"] == 0.5  # the baseline against itself: every prompt a tie
    assert math.isfinite(metrics["tax/ppl_gpt_small"]) and metrics["tax/ppl_gpt_small"] < 449
    # The reward model learned something real even in the quick run: chance is 0.5, and the gold
    # standard itself reaches ~0.73. The quick run ranks 100 held-out prompts, which move this
    # by a few points with any change to the world (0.58-0.65 so far), so the bar is 0.55.
    assert metrics["rm/accuracy_train_labelers"] > 0.55
    assert metrics["rm/accuracy_heldout_labelers"] > 0.55
    # Round 2 ranked the round-1 policy's samples beside SFT's, and the final RM trained on both rounds.
    round1 = (out / "data" / "comparisons_train.jsonl").read_text().splitlines()
    round2 = [json.loads(line) for line in (out / "data" / "comparisons_round2.jsonl").read_text().splitlines()]
    both = (out / "data" / "comparisons_train_all.jsonl").read_text().splitlines()
    assert metrics["rm/rounds"] == 2 and metrics["rm/comparisons_round2"] == len(round2) > 0
    assert len(both) == len(round1) + len(round2) and all(len(c["responses"]) == 6 for c in round2)
    assert metrics["ppo_round1/kl_small"] > 0  # the round-1 policy moved away from SFT
    final_rm = yaml.safe_load((out / "runs" / "rm" / "config.yaml").read_text())
    assert final_rm["train_file"].endswith("comparisons_train_all.jsonl")
    # The final reward model is an ensemble of two seeds on the same comparisons; PPO scored with both.
    member2 = yaml.safe_load((out / "runs" / "rm-member2" / "config.yaml").read_text())
    assert member2["train_file"] == final_rm["train_file"] and member2["seed"] != final_rm["seed"]
    reward = yaml.safe_load((out / "runs" / "ppo-small" / "config.yaml").read_text())["reward_model"].split(",")
    assert [Path(p).parent.name for p in reward] == ["rm", "rm-member2"]
    assert 0.5 < metrics["rm/accuracy_valid_member_1"] <= 1 and 0.5 < metrics["rm/accuracy_valid_member_2"] <= 1
    assert 0.5 < metrics["rm/accuracy_valid"] <= 1  # the ensemble's own, measured on the validation comparisons
    assert "ensemble of 2" in report


def test_resume_reuses_a_stage_only_if_its_config_and_input_files_are_unchanged(tmp_path):
    """A rebuilt upstream model keeps its path, so equal configs are not enough: the inputs'
    bytes must match too, or the stage reruns (a retrained RM once left stale PPO runs)."""
    from dataclasses import dataclass

    from rlhf.demo.run import run_stage

    @dataclass
    class StageConfig:
        model: str
        lr: float = 1.0

    upstream = tmp_path / "upstream"
    upstream.mkdir()
    (upstream / "weights.bin").write_bytes(b"first")
    runs: list[float] = []

    def stage(config, out):
        runs.append(config.lr)
        Path(out).mkdir(parents=True)
        (Path(out) / "config.yaml").write_text(f"model: {config.model}\nlr: {config.lr}\n")
        (Path(out) / "metrics.json").write_text(json.dumps({"n": len(runs)}))
        return {"n": len(runs)}

    folder, config = tmp_path / "stage", StageConfig(str(upstream))
    assert run_stage("s", stage, config, folder, resume=True) == {"n": 1}
    assert run_stage("s", stage, config, folder, resume=True) == {"n": 1}  # reused
    (upstream / "weights.bin").write_bytes(b"second")  # the upstream stage ran again
    assert run_stage("s", stage, config, folder, resume=True) == {"n": 2}
    assert run_stage("s", stage, StageConfig(str(upstream), lr=2.0), folder, resume=True) == {"n": 3}
    assert run_stage("s", stage, StageConfig(str(upstream), lr=2.0), folder, resume=False) == {"n": 4}
    assert runs == [1.0, 1.0, 2.0, 2.0]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_demo_in_chat_format_with_the_sft_pretraining_mix(tmp_path):
    """chat=true: every stage input holds one-turn conversations, and the models the demo samples read them (PPO
    logs its episodes' prompts as it read them); sft_ptx_coef mixes pretraining text into SFT."""
    from rlhf.cli import main as cli

    out = tmp_path / "chat"
    assert cli(["demo", "--out", str(out), "quick=true", f"cache={tmp_path / 'cache'}", "chat=true",
                "sft_ptx_coef=0.5"]) == 0
    user_turn = lambda prompt: isinstance(prompt, list) and [m["role"] for m in prompt] == ["user"]
    for name in ("sft_train", "ppo_train_prompts", "comparisons_train", "comparisons_valid"):
        records = [json.loads(line) for line in (out / "data" / f"{name}.jsonl").read_text().splitlines()]
        assert records and all(user_turn(r["prompt"]) for r in records), name
    episodes = [json.loads(line) for line in (out / "runs" / "ppo-small" / "samples.jsonl").read_text().splitlines()]
    assert episodes and all(user_turn(e["prompt"]) for e in episodes)
    assert "train/ptx_loss" in json.loads((out / "runs" / "sft-small" / "metrics.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert all(not math.isnan(metrics[f"winrate/{m}_small"]) for m in MODELS)


@pytest.mark.slow
@pytest.mark.timeout(1500)  # the first to run pays for the fixture: two quick demos with two rounds
def test_worker_processes_give_the_results_of_one_process(quick_demos):
    """Every stage seeds itself, so running the independent stages in worker processes changes only the
    wall-clock time: every metric but times and memory is identical to the last digit."""
    two, one = (json.loads((quick_demos[w] / "metrics.json").read_text()) for w in (2, 1))
    volatile = ("time/", "stage_s/", "memory/")
    assert {k for k in two if not k.startswith(volatile)} == {k for k in one if not k.startswith(volatile)}
    for key, value in two.items():
        if not key.startswith(volatile):
            assert value == one[key] or (value != value and one[key] != one[key]), key  # NaN equals NaN
    examples = [(quick_demos[w] / "report.md").read_text().split("## Examples")[1].split("## Time")[0] for w in (2, 1)]
    assert examples[0] == examples[1]
