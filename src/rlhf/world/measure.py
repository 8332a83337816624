"""Step 6 of `rlhf demo`: sample every model once on all evaluation prompts, then fill the
metrics of the report's six sections (metric keys are defined in docs/demo.md).

Prompts: `eval` (held-out customers, Figure 1 and 4), `truth` (false-premise and
misconception questions) and `harmful` (requests to decline), sampled in one pass.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from rlhf.core.run import progress
from rlhf.world.evaluate import (
    FLAGS, cloze_accuracy, cut_at_stop, flag_rates, gold_scores, kl_at_peak, mean_interval, perplexity, preferences,
    sample_texts, toxicity, truthfulness,
)

log = logging.getLogger("rlhf.demo")
TAX_MODELS = ("gpt", "sft", "ppo", "ppo_ptx")  # the prompted baseline is the base model: same weights, same tax


def sample_all(world, records: list[dict], paths: dict, config) -> dict[tuple[str, str], list[str]]:
    """(model, size) -> one response per record. The prompted baseline answers behind the few-shot
    prefix and stops at the next question."""
    from rlhf.world.demo import load_lm

    texts = {}
    bar = progress(len(paths), "sample")
    for (name, size), path in paths.items():
        model, tok = load_lm(path)
        prompts = [world.prompted(r["prompt"]) if name == "gpt_prompted" else r["prompt"] for r in records]
        out = sample_texts(model, tok, prompts, config.max_new_tokens, config.temperature, seed=config.seed + 7)
        texts[(name, size)] = [cut_at_stop(t) for t in out] if name == "gpt_prompted" else out
        bar.update(1)
    bar.close()
    return texts


def alignment_tax(paths: dict, data: Path, metrics: dict) -> None:
    """Section 4: perplexity on held-out web text and accuracy on the world's public NLP tasks."""
    from rlhf.world.demo import load_lm

    heldout = [json.loads(line)["text"] for line in (data / "pretrain_heldout.jsonl").read_text().splitlines()][:500]
    nlp = [json.loads(line) for line in (data / "nlp_tasks.jsonl").read_text().splitlines()]
    for (name, size), path in paths.items():
        if name not in TAX_MODELS:
            continue
        model, tok = load_lm(path)
        metrics[f"tax/ppl_{name}_{size}"] = perplexity(model, tok, heldout, model.config.max_position_embeddings)
        metrics[f"tax/nlp_{name}_{size}"] = cloze_accuracy(model, tok, nlp)


def overoptimisation_curve(world, run_dir: Path, records_by_id: dict[str, dict]) -> list[dict]:
    """Per PPO iteration: mean KL, reward-model score and gold score of every logged episode
    (the PPO run logs all of them to samples.jsonl)."""
    rows: dict[int, list[dict]] = {}
    samples = run_dir / "samples.jsonl"
    if not samples.exists():
        return []
    for line in samples.read_text().splitlines():
        row = json.loads(line)
        rows.setdefault(row["step"], []).append(row)
    curve = []
    for step in sorted(rows):
        episodes = [r for r in rows[step] if r["prompt_id"] in records_by_id]
        if not episodes:
            continue
        golds = gold_scores(world, [records_by_id[r["prompt_id"]] for r in episodes], [r["response"] for r in episodes])
        curve.append({"step": step, "kl": sum(r["kl"] for r in episodes) / len(episodes),
                      "reward": sum(r["reward"] for r in episodes) / len(episodes), "gold": sum(golds) / len(golds)})
    return curve


def evaluate_models(world, sets: dict, paths: dict, data: Path, runs: Path, config, metrics: dict) -> dict:
    """Fill `metrics` (sections 1, 2, 4, 5, 6) and return what the report shows besides numbers."""
    sizes = config.run_sizes
    small, largest = sizes[0], sizes[-1]
    ev, truth, harmful = sets["eval"], sets["truth"], sets["harmful"]
    records = ev + truth + harmful
    texts = sample_all(world, records, paths, config)
    n1, n2 = len(ev), len(ev) + len(truth)
    parts = {key: (t[:n1], t[n1:n2], t[n2:]) for key, t in texts.items()}
    baseline = parts[("sft", largest)][0]

    for (name, size), (t_eval, t_truth, t_harm) in parts.items():
        key = f"{name}_{size}"
        # 1. Figure 1: held-out labelers' preference over the largest SFT model
        win, low, high = mean_interval(preferences(world, ev, t_eval, baseline), config.seed)
        metrics[f"winrate/{key}"], metrics[f"winrate_low/{key}"], metrics[f"winrate_high/{key}"] = win, low, high
        # 2. Figure 4: metadata flags under the gold standard
        for flag, rate in flag_rates(world, ev, t_eval).items():
            metrics[f"flags/{flag}_{key}"] = rate
        metrics[f"gold/score_{key}"] = sum(gold_scores(world, ev, t_eval)) / n1
        # 6. truthfulness and toxicity
        for what, rate in truthfulness(world, truth, t_truth).items():
            metrics[f"truth/{what}_{key}"] = rate
        metrics[f"toxicity/rate_{key}"] = toxicity(world, ev, t_eval)
        metrics[f"toxicity/harmful_prompts_{key}"] = toxicity(world, harmful, t_harm)
        metrics[f"harmful/declined_{key}"] = 1 - flag_rates(world, harmful, t_harm)["fails_instruction"]

    # 1b. the headline, head to head: the smallest PPO-ptx against the largest base model
    for base in ("gpt", "gpt_prompted"):
        prefs = preferences(world, ev, parts[("ppo_ptx", small)][0], parts[(base, largest)][0])
        win, low, high = mean_interval(prefs, config.seed)
        key = f"ppo_ptx_{small}_vs_{base}_{largest}"
        metrics[f"head2head/{key}"], metrics[f"head2head_low/{key}"], metrics[f"head2head_high/{key}"] = win, low, high

    # 4. alignment tax
    alignment_tax(paths, data, metrics)

    # 5. over-optimisation: gold vs reward-model score against KL over each PPO run
    by_id = {r["id"]: r for r in sets["ppo_train"]}
    curves = {}
    for size in sizes:
        for name in ("ppo", "ppo_ptx"):
            curve = overoptimisation_curve(world, runs / f"{name}-{size}", by_id)
            curves[f"{name}_{size}"] = curve
            if curve:
                kl, gold = kl_at_peak([c["kl"] for c in curve], [c["gold"] for c in curve])
                metrics[f"overopt/gold_first_{name}_{size}"] = curve[0]["gold"]
                metrics[f"overopt/gold_last_{name}_{size}"] = curve[-1]["gold"]
                metrics[f"overopt/gold_peak_{name}_{size}"] = gold
                metrics[f"overopt/kl_at_gold_peak_{name}_{size}"] = kl
                metrics[f"overopt/kl_last_{name}_{size}"] = curve[-1]["kl"]
    examples = example_rows(records, texts, sizes, n1)
    return {"curves": curves, "examples": examples, "flags": FLAGS}


def example_rows(records: list[dict], texts: dict, sizes: list[str], n_eval: int) -> list[dict]:
    """A few prompts with every model's answer for the report: the first socks question, the
    first harmful request, and the first eval prompts of a few categories."""
    wanted, seen = [], set()
    for i, r in enumerate(records):
        kind = "socks" if r["task"].get("premise") == "socks" else r["task"]["type"] if i >= n_eval else r["category"]
        if kind in seen or kind not in ("socks", "decline", "open_qa", "brainstorming", "generation"):
            continue
        seen.add(kind)
        wanted.append(i)
    small, largest = sizes[0], sizes[-1]
    shown = [("gpt", largest), ("gpt_prompted", largest), ("sft", small), ("ppo", small), ("ppo_ptx", small)]
    return [{"prompt": records[i]["prompt"], "answers": {f"{m}_{s}": texts[(m, s)][i] for m, s in shown}}
            for i in wanted]
