"""`rlhf demo`: the whole InstructGPT loop on the embedded world, then the paper's results.

1. data: the world's files in Table 6 ratios (`rlhf.world.datasets`)
2. base models: `rlhf pretrain` at each size (reused from the cache)
3. SFT at each size on the labelers' demonstrations (`rlhf sft`)
4. comparisons: K responses per prompt (SFT samples and mixed-quality samples) ranked by
   the training labelers; one reward model for every size, as the paper used one 6B RM (`rlhf rm`)
5. PPO and PPO-ptx at each size against that reward model (`rlhf ppo`)
6. evaluation with the held-out labelers and the gold standard (`rlhf.demo.measure`)
-> report.md with PNG plots, metrics.json (docs/demo.md explains how to read them)

Each stage runs in its own folder under --out/runs with the stage's own config; with
--resume a stage whose folder holds finished results for the same config and the same
input files (byte for byte) is not run again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import torch

from rlhf.config import to_dict
from rlhf.core.io import atomic_write_jsonl, atomic_write_text
from rlhf.core.run import Run
from rlhf.demo.config import DemoConfig
from rlhf.demo.keys import RL_MODELS, metric_key
from rlhf.demo.pretrain import pretrained_models

log = logging.getLogger("rlhf.demo")


# -- stages ----------------------------------------------------------------------------------
def run_stage(name: str, main_fn, config, folder: Path, resume: bool) -> dict:
    """Run one stage in `folder`, or reuse its finished results when resuming with the same config and
    byte-identical inputs: a rebuilt upstream model or data file keeps its path, so the config alone
    would not show that an earlier stage ran again."""
    saved, metrics_file, inputs_file = folder / "config.yaml", folder / "metrics.json", folder / "inputs.sha256"
    inputs = input_fingerprint(to_dict(config))
    if resume and saved.exists() and metrics_file.exists() and inputs_file.exists():
        import yaml

        if yaml.safe_load(saved.read_text()) == to_dict(config) and inputs_file.read_text().strip() == inputs:
            log.info("%s: reusing the finished run in %s", name, folder)
            return json.loads(metrics_file.read_text())
    if folder.exists():
        import shutil

        shutil.rmtree(folder)  # a stale or half-finished stage: start it clean
    log.info("%s: running in %s", name, folder)
    metrics = main_fn(config, str(folder))
    atomic_write_text(inputs_file, inputs + "\n")  # written last: its presence marks a finished stage
    return metrics


def input_fingerprint(values) -> str:
    """sha256 of the contents of every existing file or folder a (nested) config dict names."""
    digest = hashlib.sha256()

    def visit(value) -> None:
        if isinstance(value, dict):
            for key in sorted(value):
                visit(value[key])
        elif isinstance(value, list):
            for item in value:
                visit(item)
        elif isinstance(value, str) and value and Path(value).exists():
            root = Path(value)
            for f in sorted(root.rglob("*")) if root.is_dir() else [root]:
                if f.is_file():
                    digest.update(f"{value}:{f.relative_to(root) if root.is_dir() else ''}".encode())
                    digest.update(f.read_bytes())

    visit(values)
    return digest.hexdigest()


def run_sft(config: DemoConfig, size: str, base: str, data: Path, runs: Path, resume: bool) -> dict:
    from rlhf.sft.config import SFTConfig
    from rlhf.sft.train import main

    sft = SFTConfig(model=base, train_file=str(data / "sft_train.jsonl"), eval_file=str(data / "sft_valid.jsonl"),
                    epochs=config.sft_epochs, lr=config.sft_lr, batch_size=16, micro_batch_size=16, max_length=256,
                    warmup_ratio=0.05, min_lr_ratio=0.1, weight_decay=0.1, seed=config.seed, logging_steps=20)
    sft.validate()
    return run_stage(f"sft {size}", main, sft, runs / f"sft-{size}", resume)


def run_rm(config: DemoConfig, sft_model: str, data: Path, runs: Path, resume: bool) -> dict:
    from rlhf.rm.config import RMConfig
    from rlhf.rm.train import main

    rm = RMConfig(model=sft_model, train_file=str(data / "comparisons_train.jsonl"),
                  eval_file=str(data / "comparisons_valid.jsonl"), norm_file=str(data / "sft_train.jsonl"),
                  epochs=config.rm_epochs, lr=config.rm_lr, batch_size=16, micro_batch_size=16, max_length=256,
                  warmup_ratio=0.05, weight_decay=0.0, seed=config.seed, logging_steps=10)
    rm.validate()
    return run_stage("rm", main, rm, runs / "rm", resume)


def run_ppo(config: DemoConfig, size: str, ptx: bool, data: Path, runs: Path, resume: bool) -> dict:
    from rlhf.ppo.config import PPOConfig
    from rlhf.ppo.train import main

    ppo = PPOConfig(policy=str(runs / f"sft-{size}" / "final"), reward_model=str(runs / "rm" / "final"),
                    prompts_file=str(data / "ppo_train_prompts.jsonl"),
                    pretrain_file=str(data / "pretrain.jsonl") if ptx else "",
                    total_episodes=config.num_ppo_episodes, batch_size=64, mini_batch_size=16, micro_batch_size=16,
                    ppo_epochs=4, lr=getattr(config.ppo_lr, size), max_new_tokens=config.max_new_tokens, max_length=256,
                    temperature=config.temperature, kl_coef=config.kl_coef, ptx_coef=config.ptx_coef if ptx else 0.0,
                    no_eos_penalty=config.no_eos_penalty, value_warmup_iterations=config.value_warmup_iterations,
                    ptx_batch_size=16, ptx_max_length=128, seed=config.seed, log_samples=64, save_steps=0)
    ppo.validate()
    name = "ppo_ptx" if ptx else "ppo"
    return run_stage(f"{name} {size}", main, ppo, runs / f"{name}-{size}", resume)


# -- data ------------------------------------------------------------------------------------
def prepare_data(world, data: Path, config: DemoConfig) -> dict[str, list[dict]]:
    """The world's files, plus the demo's own prompt sets: RM validation prompts (ranked by training
    and by held-out labelers) and the truthfulness / harmful-request sets of section 6."""
    from rlhf.world.datasets import build_datasets, build_prompt_sets

    build_datasets(world, data, scale=config.scale, n_eval=config.eval_prompts)
    sets = build_prompt_sets(world, config.scale, config.eval_prompts)
    used = {p["prompt"] for records in sets.values() for p in records}
    special = world.prompts(3000, split="test", stream="demo-special", exclude=used)
    sets["truth"] = [p for p in special if p["task"]["type"] == "false_premise"][:60]
    sets["harmful"] = [p for p in special if p["task"]["type"] == "decline"][:60]
    used |= {p["prompt"] for p in special}
    sets["rm_heldout"] = world.prompts(300 if not config.quick else 100, split="valid", stream="demo-rm-heldout",
                                       exclude=used)
    sets["eval"] = sets["eval"][: config.num_eval_prompts]
    return sets


def candidate_responses(world, records: list[dict], sft_paths: dict[str, str], config: DemoConfig,
                        nonce: int) -> list[list[str]]:
    """K responses per prompt: rm_policy_samples from the SFT models (each prompt's size in turn,
    as the paper sampled from several models) and rm_world_samples of mixed quality."""
    from rlhf.demo.measure import load_lm, sample_texts

    sizes = list(sft_paths)
    out: list[list[str]] = [[] for _ in records]
    for s, size in enumerate(sizes):
        mine = [i for i in range(len(records)) if i % len(sizes) == s]
        if not mine:
            continue
        model, tok = load_lm(sft_paths[size])
        for k in range(config.rm_policy_samples):
            texts = sample_texts(model, tok, [records[i]["prompt"] for i in mine], config.max_new_tokens,
                                 config.temperature, seed=config.seed * 1000 + nonce * 100 + k)
            for i, t in zip(mine, texts):
                out[i].append(t)
    for i, r in enumerate(records):
        out[i] += world.sample_responses(r, config.rm_world_samples, nonce=nonce)
    return out


def build_comparisons(world, sets: dict, sft_paths: dict[str, str], data: Path, config: DemoConfig) -> dict:
    """comparisons_{train,valid}.jsonl ranked by training labelers; the held-out set ranked twice."""
    out = {"rm_train": []}
    for r in range(config.rm_rankings_per_prompt):
        nonce = 1 if r == 0 else 10 + r  # the first set is the one a single-ranking run would draw
        responses = candidate_responses(world, sets["rm_train"], sft_paths, config, nonce)
        out["rm_train"] += world.comparisons(sets["rm_train"], responses)
    for name, nonce in (("rm_valid", 2), ("rm_heldout", 3)):
        responses = candidate_responses(world, sets[name], sft_paths, config, nonce)
        out[name] = world.comparisons(sets[name], responses)
        if name == "rm_heldout":
            out["rm_heldout_by_heldout"] = world.comparisons(sets[name], responses, heldout=True)
    atomic_write_jsonl(data / "comparisons_train.jsonl", out["rm_train"])
    atomic_write_jsonl(data / "comparisons_valid.jsonl", out["rm_valid"])
    atomic_write_jsonl(data / "comparisons_heldout_train_labelers.jsonl", out["rm_heldout"])
    atomic_write_jsonl(data / "comparisons_heldout_heldout_labelers.jsonl", out["rm_heldout_by_heldout"])
    return out


# -- main ------------------------------------------------------------------------------------
def main(config: DemoConfig, out: str, resume: bool = False) -> dict:
    from rlhf.demo.measure import evaluate_models, rm_accuracy
    from rlhf.demo.report import write_report
    from rlhf.world import World
    from rlhf.world.evaluate import gold_accuracy

    start = time.time()
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    run = Run(out, config, True, resume=False)
    out_dir, timings = Path(out), {}
    data, runs = out_dir / "data", out_dir / "runs"
    world = World(config.seed)
    sizes = config.run_sizes

    def lap(name: str, t0: float) -> None:
        timings[metric_key("time", name, "s")] = round(time.time() - t0, 1)
        log.info("demo: %s done in %.0f s (%.0f s so far)", name, time.time() - t0, time.time() - start)

    t = time.time()
    sets = prepare_data(world, data, config)
    lap("data", t)
    t = time.time()
    bases = pretrained_models(config.pretrain_config())
    lap("pretrain", t)
    t = time.time()
    sft_metrics = {s: run_sft(config, s, bases[s]["path"], data, runs, resume) for s in sizes}
    sft_paths = {s: str(runs / f"sft-{s}" / "final") for s in sizes}
    lap("sft", t)
    t = time.time()
    comparisons = build_comparisons(world, sets, sft_paths, data, config)
    rm_metrics = run_rm(config, sft_paths[config.reward_size], data, runs, resume)
    lap("rm", t)
    t = time.time()
    ppo_metrics = {(name, s): run_ppo(config, s, name == "ppo_ptx", data, runs, resume)
                   for s in sizes for name in RL_MODELS}
    lap("ppo", t)

    t = time.time()
    from rlhf.core.reward import load_reward_model

    rm = load_reward_model(runs / "rm" / "final")
    heldout_by_id = {r["id"]: r for r in sets["rm_heldout"]}
    metrics: dict = {
        "rm/accuracy_train_labelers": rm_accuracy(rm, comparisons["rm_heldout"], 256),
        "rm/accuracy_heldout_labelers": rm_accuracy(rm, comparisons["rm_heldout_by_heldout"], 256),
        "rm/accuracy_valid": rm_metrics.get("rm/eval_accuracy", float("nan")),
        "rm/gold_accuracy_train_labelers": gold_accuracy(world, heldout_by_id, comparisons["rm_heldout"]),
        "rm/gold_accuracy_heldout_labelers": gold_accuracy(world, heldout_by_id, comparisons["rm_heldout_by_heldout"]),
        "labelers/agreement": world.agreement(),
    }
    paths = {("gpt", s): bases[s]["path"] for s in sizes}
    paths.update({("gpt_prompted", s): bases[s]["path"] for s in sizes})
    paths.update({("sft", s): sft_paths[s] for s in sizes})
    paths.update({(name, s): str(runs / f"{name}-{s}" / "final") for s in sizes for name in RL_MODELS})
    details = evaluate_models(world, sets, paths, data, runs, config, metrics)
    lap("eval", t)

    for s in sizes:
        metrics[metric_key("params", s)] = bases[s]["params"]
        metrics[metric_key("sft", "eval_loss", s)] = sft_metrics[s].get("sft/eval_loss", float("nan"))
        for name in RL_MODELS:
            m = ppo_metrics[(name, s)]
            metrics[metric_key(name, "reward_first", s)] = m.get("ppo/reward_first", float("nan"))
            metrics[metric_key(name, "reward_last", s)] = m.get("ppo/reward_last", float("nan"))
            metrics[metric_key(name, "kl", s)] = m.get("objective/kl", float("nan"))
    # Episodes per PPO prompt: the paper ran ~8 passes (256k episodes over 31k prompts); report.py says why it matters.
    metrics["ppo/prompt_passes"] = config.num_ppo_episodes / len(sets["ppo_train"])
    metrics.update(timings)
    metrics["time/total_s"] = round(time.time() - start, 1)
    write_report(out_dir, config, metrics, details, bases)
    log.info("demo: report in %s (%.0f s)", out_dir / "report.md", metrics["time/total_s"])
    summary = run.finish(metrics)
    return {k: v for k, v in summary.items() if k.startswith(("winrate/", "head2head/", "rm/", "time/total"))}
