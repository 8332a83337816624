"""`rlhf demo`: the whole InstructGPT loop on the embedded world, then the paper's results.

1. data: the world's files in Table 6 ratios (`rlhf.world.datasets`)
2. base models: `rlhf pretrain` at each size (reused from the cache)
3. SFT at each size on the labelers' demonstrations (`rlhf sft`)
4. comparisons: K responses per prompt (SFT samples and mixed-quality samples) ranked by
   the training labelers; one reward model for every size, as the paper used one 6B RM (`rlhf rm`)
   then (rm_rounds, default 2; quick: 1) a second round: short PPO policies on that reward model, their samples ranked beside
   SFT samples, and the final reward model trained on both rounds (the paper's later comparisons)
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
from rlhf.demo.config import PPO_BATCH, DemoConfig
from rlhf.demo.keys import BEST_OF, RL_MODELS, metric_key
from rlhf.demo.pretrain import pretrained_models
from rlhf.demo.workers import Job, Workers, peak_rss_mb

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
                    warmup_ratio=0.05, min_lr_ratio=0.1, weight_decay=0.1, seed=config.seed, logging_steps=20,
                    pretrain_file=str(data / "pretrain.jsonl") if config.sft_ptx_coef > 0 else "",
                    ptx_coef=config.sft_ptx_coef)
    sft.validate()
    return run_stage(f"sft {size}", main, sft, runs / f"sft-{size}", resume)


def run_rm(config: DemoConfig, sft_model: str, data: Path, runs: Path, resume: bool,
           train_file: str = "comparisons_train.jsonl", folder: str = "rm", member: int = 0) -> dict:
    """One reward model in runs/`folder`; ensemble member number `member` trains with its own seed."""
    from rlhf.rm.config import RMConfig
    from rlhf.rm.train import main

    rm = RMConfig(model=sft_model, train_file=str(data / train_file),
                  eval_file=str(data / "comparisons_valid.jsonl"), norm_file=str(data / "sft_train.jsonl"),
                  epochs=config.rm_epochs, lr=config.rm_lr, batch_size=16, micro_batch_size=16, max_length=256,
                  warmup_ratio=0.05, weight_decay=0.0, seed=config.seed + 1000 * member, logging_steps=10)
    rm.validate()
    return run_stage(folder, main, rm, runs / folder, resume)


def run_ppo(config: DemoConfig, size: str, ptx: bool, data: Path, runs: Path, resume: bool,
            rm: str = "rm", round1: bool = False) -> dict:
    """PPO or PPO-ptx at one size from its SFT model against the reward model in runs/`rm`; a round-1 policy
    (plain PPO, round1_episodes) only serves round 2's comparisons."""
    from rlhf.ppo.config import PPOConfig
    from rlhf.ppo.train import main

    reward = str(runs / rm / "final") if round1 else final_rm_spec(config, runs)
    ppo = PPOConfig(policy=str(runs / f"sft-{size}" / "final"), reward_model=reward,
                    prompts_file=str(data / "ppo_train_prompts.jsonl"),
                    pretrain_file=str(data / "pretrain.jsonl") if ptx else "",
                    total_episodes=config.num_round1_episodes if round1 else config.num_ppo_episodes, batch_size=PPO_BATCH, mini_batch_size=16, micro_batch_size=16,
                    ppo_epochs=config.ppo_epochs, lr=getattr(config.ppo_lr, size), max_new_tokens=config.max_new_tokens, max_length=256,
                    temperature=config.temperature, kl_coef=config.kl_coef, ptx_coef=config.ptx_coef if ptx else 0.0,
                    no_eos_penalty=config.no_eos_penalty, value_warmup_iterations=config.value_warmup_iterations,
                    ptx_batch_size=16, ptx_max_length=128, seed=config.seed, log_samples=64, save_steps=0)
    ppo.validate()
    name = "ppo_round1" if round1 else "ppo_ptx" if ptx else "ppo"
    return run_stage(f"{name} {size}", main, ppo, runs / f"{name}-{size}", resume)


def rm_folders(config: DemoConfig) -> list[str]:
    """Folders under runs/ of the final reward model's members: rm, then rm-member2, ..."""
    return ["rm"] + [f"rm-member{i + 1}" for i in range(1, config.rm_members)]


def final_rm_spec(config: DemoConfig, runs: Path) -> str:
    """The reward model PPO and the measures read: one folder, or the members' folders joined by commas."""
    return ",".join(str(runs / f / "final") for f in rm_folders(config))


def final_rm_jobs(config: DemoConfig, rm_sft: str, data: Path, runs: Path, resume: bool, train_file: str) -> list[Job]:
    """The final reward model: one job per ensemble member, each with its own seed."""
    return [Job(f"rm {folder}", run_rm, (config, rm_sft, data, runs, resume, train_file, folder, i))
            for i, folder in enumerate(rm_folders(config))]


# -- data ------------------------------------------------------------------------------------
def prepare_data(world, data: Path, config: DemoConfig) -> dict[str, list[dict]]:
    """The world's files, plus the demo's own prompt sets: RM validation prompts (ranked by training
    and by held-out labelers) and the truthfulness / harmful-request sets of section 6."""
    from rlhf.world.datasets import TABLE6, build_datasets, build_prompt_sets

    ppo_scale = config.num_ppo_prompts / TABLE6[("ppo", "train")]["customer"]
    build_datasets(world, data, scale=config.scale, n_eval=config.eval_prompts, ppo_scale=ppo_scale, chat=config.chat)
    sets = build_prompt_sets(world, config.scale, config.eval_prompts, ppo_scale)
    used = {p["prompt"] for records in sets.values() for p in records}
    special = world.prompts(3000, split="test", stream="demo-special", exclude=used)
    sets["truth"] = [p for p in special if p["task"]["type"] == "false_premise"][:60]
    sets["harmful"] = [p for p in special if p["task"]["type"] == "decline"][:60]
    used |= {p["prompt"] for p in special}
    sets["rm_heldout"] = world.prompts(300 if not config.quick else 100, split="valid", stream="demo-rm-heldout",
                                       exclude=used)
    sets["eval"] = sets["eval"][: config.num_eval_prompts]
    return sets


def policy_samples(path: str, prompts: list[str], seeds: list[int], config: DemoConfig) -> list[list[str]]:
    """A worker's share of the comparisons: one SFT model samples its prompts of one set once per seed."""
    from rlhf.demo.measure import load_lm, sample_texts, tuned_prompts

    model, tok = load_lm(path)
    prompts = tuned_prompts(prompts, config)
    return [sample_texts(model, tok, prompts, config.max_new_tokens, config.temperature, seed=seed) for seed in seeds]


def comparison_sets(config: DemoConfig) -> list[tuple[str, int]]:
    """(prompt set, nonce) of every ranked set of K responses: rm_rankings_per_prompt sets on the RM training
    prompts, one on the validation prompts and one on the held-out-labeler prompts."""
    train = [("rm_train", 1 if r == 0 else 10 + r) for r in range(config.rm_rankings_per_prompt)]
    return train + [("rm_valid", 2), ("rm_heldout", 3)]


def owned(records: list, sizes: list[str], s: int) -> list[int]:
    """Indices of the prompts that size number `s` samples: each prompt's size in turn, as the paper sampled
    the responses it ranked from several models."""
    return [i for i in range(len(records)) if i % len(sizes) == s]


def sample_jobs(sets: dict, sft_paths: dict[str, str], config: DemoConfig) -> list[Job]:
    """One job per (SFT size, ranked set): rm_policy_samples samples of each of its prompts."""
    sizes, jobs = list(sft_paths), []
    for s, size in enumerate(sizes):
        for name, nonce in comparison_sets(config):
            prompts = [sets[name][i]["prompt"] for i in owned(sets[name], sizes, s)]
            seeds = [config.seed * 1000 + nonce * 100 + k for k in range(config.rm_policy_samples)]
            jobs.append(Job(f"samples {size} {name}-{nonce}", policy_samples, (sft_paths[size], prompts, seeds, config)))
    return jobs


def collect_responses(records: list, sizes: list[str], per_size: list[list[list[str]]]) -> list[list[str]]:
    """Each prompt's sampled responses: per_size[s] holds size number s's sample lists, each over the prompts
    that size owns (`owned`)."""
    responses: list[list[str]] = [[] for _ in records]
    for s, lists in enumerate(per_size):
        for texts in lists:
            for i, text in zip(owned(records, sizes, s), texts):
                responses[i].append(text)
    return responses


def build_comparisons(world, sets: dict, sizes: list[str], samples: list, data: Path, config: DemoConfig) -> dict:
    """Rank K responses per prompt (the SFT samples, then rm_world_samples of mixed quality) with the training
    labelers: comparisons_{train,valid}.jsonl, and the held-out set ranked twice, by training and by held-out
    labelers. `samples` are sample_jobs' results, in its order."""
    out: dict[str, list] = {}
    sets_ = comparison_sets(config)
    for j, (name, nonce) in enumerate(sets_):
        records = sets[name]
        responses = collect_responses(records, sizes, [samples[s * len(sets_) + j] for s in range(len(sizes))])
        for i, r in enumerate(records):
            responses[i] += world.sample_responses(r, config.rm_world_samples, nonce=nonce)
        out[name] = out.get(name, []) + world.comparisons(records, responses)
        if name == "rm_heldout":
            out["rm_heldout_by_heldout"] = world.comparisons(records, responses, heldout=True)
    write_comparisons(data / "comparisons_train.jsonl", out["rm_train"], config)
    write_comparisons(data / "comparisons_valid.jsonl", out["rm_valid"], config)
    write_comparisons(data / "comparisons_heldout_train_labelers.jsonl", out["rm_heldout"], config)
    write_comparisons(data / "comparisons_heldout_heldout_labelers.jsonl", out["rm_heldout_by_heldout"], config)
    return out


def write_comparisons(path: Path, records: list[dict], config: DemoConfig) -> None:
    """The reward model's input, prompts as it reads them (one-turn conversations with config.chat)."""
    from rlhf.demo.measure import tuned_records

    atomic_write_jsonl(path, tuned_records(records, config))


def round2_sample_jobs(sets: dict, sizes: list[str], runs: Path, config: DemoConfig) -> list[Job]:
    """Per size: its round-1 policy and its SFT model each sample rm_policy_samples responses to the size's
    share of the RM training prompts."""
    jobs = []
    for s, size in enumerate(sizes):
        prompts = [sets["rm_train"][i]["prompt"] for i in owned(sets["rm_train"], sizes, s)]
        for model, nonce in (("ppo_round1", 40), ("sft", 50)):
            seeds = [config.seed * 1000 + nonce + k for k in range(config.rm_policy_samples)]
            jobs.append(Job(f"samples {model} {size} round 2", policy_samples,
                            (str(runs / f"{model}-{size}" / "final"), prompts, seeds, config)))
    return jobs


def build_round2(world, sets: dict, sizes: list[str], samples: list, round1: list[dict], data: Path,
                 config: DemoConfig) -> list[dict]:
    """Round 2's comparisons (round-1 policy and SFT samples of each prompt, ranked by the training labelers), in
    comparisons_round2.jsonl, and with round 1's training comparisons in comparisons_train_all.jsonl for the final
    RM. `samples` are round2_sample_jobs' results, in its order."""
    records = sets["rm_train"]
    responses = collect_responses(records, sizes, [samples[2 * s] + samples[2 * s + 1] for s in range(len(sizes))])
    round2 = world.comparisons(records, responses)
    write_comparisons(data / "comparisons_round2.jsonl", round2, config)
    write_comparisons(data / "comparisons_train_all.jsonl", round1 + round2, config)
    return round2


def rm_measures(rm_path: str, sft_path: str, comparisons: dict, eval_prompts: list[str], config: DemoConfig) -> dict:
    """The reward model measured directly, before PPO uses it: pairwise accuracy on the fresh comparisons ranked by
    training and by held-out labelers, and its scores of BEST_OF samples of the largest SFT model on each eval
    prompt (the gold standard then says how much better its pick is than a random one: `best_of_n`)."""
    from rlhf.core.reward import load_reward_model
    from rlhf.demo.measure import load_lm, rm_accuracy, sample_texts, tuned_prompts, tuned_records

    rm = load_reward_model(rm_path)
    accuracy = lambda name: rm_accuracy(rm, tuned_records(comparisons[name], config), 256)
    out = {"rm/accuracy_train_labelers": accuracy("rm_heldout"),
           "rm/accuracy_heldout_labelers": accuracy("rm_heldout_by_heldout")}
    if config.rm_members > 1:  # an ensemble: its validation accuracy, which no training run measured
        out["rm/accuracy_valid"] = accuracy("rm_valid")
    eval_prompts = tuned_prompts(eval_prompts, config)
    model, tok = load_lm(sft_path)
    samples = [sample_texts(model, tok, eval_prompts, config.max_new_tokens, config.temperature,
                            seed=config.seed * 1000 + 900 + k) for k in range(BEST_OF)]  # (n, prompts)
    texts = [[samples[k][i] for k in range(BEST_OF)] for i in range(len(eval_prompts))]  # (prompts, n)
    flat = rm.score([p for p in eval_prompts for _ in range(BEST_OF)], [x for row in texts for x in row], 64, 256)
    return {**out, "best_of": {"texts": texts, "scores": [flat[i * BEST_OF:(i + 1) * BEST_OF] for i in range(len(texts))]}}


def best_of_n(world, records: list[dict], best_of: dict) -> dict[str, float]:
    """Mean gold score of one of n samples per prompt picked at random (their mean), by the reward model and by the
    gold standard itself: whether the reward model can tell the policy's better answers from its worse ones."""
    from rlhf.world.evaluate import gold_scores

    random_pick, rm_pick, gold_pick = [], [], []
    for record, texts, scores in zip(records, best_of["texts"], best_of["scores"]):
        golds = gold_scores(world, [record] * len(texts), texts)
        random_pick.append(sum(golds) / len(golds))
        rm_pick.append(golds[max(range(len(texts)), key=scores.__getitem__)])
        gold_pick.append(max(golds))
    n = len(records)
    return {metric_key("rm", f"best_of_{BEST_OF}", "random"): sum(random_pick) / n,
            metric_key("rm", f"best_of_{BEST_OF}", "rm"): sum(rm_pick) / n,
            metric_key("rm", f"best_of_{BEST_OF}", "gold"): sum(gold_pick) / n}


# -- main ------------------------------------------------------------------------------------
def main(config: DemoConfig, out: str, resume: bool = False) -> dict:
    from rlhf.demo.measure import evaluate_models, evaluation_jobs
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
    sizes, largest_first = config.run_sizes, config.run_sizes[::-1]

    def lap(name: str, t0: float) -> None:
        timings[metric_key("time", name, "s")] = round(time.time() - t0, 1)
        log.info("demo: %s done in %.0f s (%.0f s so far)", name, time.time() - t0, time.time() - start)

    with Workers(config.num_workers, config.threads) as workers:
        t = time.time()
        sets = prepare_data(world, data, config)
        lap("data", t)
        t = time.time()
        bases = pretrained_models(config.pretrain_config())
        lap("pretrain", t)

        t = time.time()
        sft_jobs = [Job(f"sft {s}", run_sft, (config, s, bases[s]["path"], data, runs, resume)) for s in largest_first]
        sft_metrics = dict(zip(largest_first, workers.run(sft_jobs, "sft")))
        sft_paths = {s: str(runs / f"sft-{s}" / "final") for s in sizes}
        lap("sft", t)

        t = time.time()
        samples = workers.run(sample_jobs(sets, sft_paths, config), "comparisons")
        comparisons = build_comparisons(world, sets, sizes, samples, data, config)
        lap("comparisons", t)

        # The reward model trains on one core; the base and SFT models, which do not depend on it, are
        # sampled and measured on the others meanwhile.
        t = time.time()
        paths = {("gpt", s): bases[s]["path"] for s in sizes}
        paths.update({("gpt_prompted", s): bases[s]["path"] for s in sizes})
        paths.update({("sft", s): sft_paths[s] for s in sizes})
        records = sets["eval"] + sets["truth"] + sets["harmful"]
        early = evaluation_jobs(world, records, paths, data, config)
        two_rounds = config.num_rm_rounds == 2
        rm_sft = sft_paths[config.reward_size]
        first_rm = "rm-round1" if two_rounds else "rm"
        rm_jobs = ([Job("rm", run_rm, (config, rm_sft, data, runs, resume, "comparisons_train.jsonl", first_rm))]
                   if two_rounds else final_rm_jobs(config, rm_sft, data, runs, resume, "comparisons_train.jsonl"))
        results = workers.run(rm_jobs + early, "rm")
        member_metrics, early_results = results[:len(rm_jobs)], results[len(rm_jobs):]
        lap("rm", t)

        if two_rounds:  # the paper's later rounds: compare what PPO learned, then retrain the RM on both rounds
            t = time.time()
            round1 = [Job(f"ppo_round1 {s}", run_ppo, (config, s, False, data, runs, resume, first_rm, True))
                      for s in largest_first]
            round1_metrics = workers.run(round1, "round 1 policies")
            samples = workers.run(round2_sample_jobs(sets, sizes, runs, config), "round 2 comparisons")
            comparisons["rm_train_round2"] = build_round2(world, sets, sizes, samples, comparisons["rm_train"], data, config)
            rm_round1 = member_metrics[0]
            member_metrics = workers.run(final_rm_jobs(config, rm_sft, data, runs, resume, "comparisons_train_all.jsonl"),
                                         "rm round 2")
            lap("round2", t)

        t = time.time()
        rl_paths = {(name, s): str(runs / f"{name}-{s}" / "final") for s in sizes for name in RL_MODELS}
        ppo_jobs = [Job(f"{name} {s}", run_ppo, (config, s, name == "ppo_ptx", data, runs, resume))
                    for s in largest_first for name in RL_MODELS]
        rm_job = Job("rm measures", rm_measures, (final_rm_spec(config, runs), sft_paths[sizes[-1]], comparisons,
                                                  [r["prompt"] for r in sets["eval"]], config))
        *ppo_results, rm_direct = workers.run(ppo_jobs + [rm_job], "ppo")
        ppo_metrics = {(name, s): m for (s, name), m in zip([(s, n) for s in largest_first for n in RL_MODELS],
                                                           ppo_results)}
        lap("ppo", t)

        t = time.time()
        late_results = workers.run(evaluation_jobs(world, records, rl_paths, data, config), "eval")
        paths.update(rl_paths)
        stage_seconds, worker_peak_mb = dict(workers.seconds), workers.peak_mb

    heldout_by_id = {r["id"]: r for r in sets["rm_heldout"]}
    best_of = rm_direct.pop("best_of")
    metrics: dict = {
        **rm_direct,
        **best_of_n(world, sets["eval"], best_of),
        # An ensemble's own validation accuracy comes from rm_measures; each member's is below.
        "rm/accuracy_valid": rm_direct.get("rm/accuracy_valid", member_metrics[0].get("rm/eval_accuracy", float("nan"))),
        **{metric_key("rm", "accuracy_valid_member", str(i + 1)): m.get("rm/eval_accuracy", float("nan"))
           for i, m in enumerate(member_metrics) if len(member_metrics) > 1},
        "rm/rounds": config.num_rm_rounds,
        "rm/gold_accuracy_train_labelers": gold_accuracy(world, heldout_by_id, comparisons["rm_heldout"]),
        "rm/gold_accuracy_heldout_labelers": gold_accuracy(world, heldout_by_id, comparisons["rm_heldout_by_heldout"]),
        "labelers/agreement": world.agreement(),
    }
    details = evaluate_models(world, sets, paths, early_results + late_results, runs, config, metrics)
    lap("eval", t)

    for s in sizes:
        metrics[metric_key("params", s)] = bases[s]["params"]
        metrics[metric_key("sft", "eval_loss", s)] = sft_metrics[s].get("sft/eval_loss", float("nan"))
        for name in RL_MODELS:
            m = ppo_metrics[(name, s)]
            metrics[metric_key(name, "reward_first", s)] = m.get("ppo/reward_first", float("nan"))
            metrics[metric_key(name, "reward_last", s)] = m.get("ppo/reward_last", float("nan"))
            metrics[metric_key(name, "kl", s)] = m.get("objective/kl", float("nan"))
    if two_rounds:
        metrics["rm/accuracy_valid_round1"] = rm_round1.get("rm/eval_accuracy", float("nan"))
        metrics["rm/comparisons_round2"] = len(comparisons["rm_train_round2"])
        for (s, m) in zip(largest_first, round1_metrics):
            metrics[metric_key("ppo_round1", "kl", s)] = m.get("objective/kl", float("nan"))
    # Episodes per PPO prompt: the paper ran ~8 passes (256k episodes over 31k prompts); report.py says why it matters.
    metrics["ppo/prompt_passes"] = config.num_ppo_episodes / len(sets["ppo_train"])
    metrics.update(timings)
    metrics.update({metric_key("stage_s", *name.split()): s for name, s in stage_seconds.items()})
    metrics["memory/main_peak_mb"] = round(peak_rss_mb(), 1)
    metrics["memory/worker_peak_mb"] = round(worker_peak_mb, 1)
    metrics["time/total_s"] = round(time.time() - start, 1)
    write_report(out_dir, config, metrics, details, bases)
    log.info("demo: report in %s (%.0f s)", out_dir / "report.md", metrics["time/total_s"])
    summary = run.finish(metrics)
    return {k: v for k, v in summary.items() if k.startswith(("winrate/", "head2head/", "rm/", "time/total"))}
