"""Step 6 of `rlhf demo`: sample every model once on all evaluation prompts, then fill the
metrics of the report's six sections (metric keys are defined in docs/demo.md).

Prompts: `eval` (held-out customers, Figure 1 and 4), `truth` (false-premise and
misconception questions) and `harmful` (requests to decline), sampled in one pass.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from rlhf.demo.keys import BASE_MODELS, FIGURE4_FLAGS, HEADLINE_BASELINES, RL_MODELS, TAX_MODELS, interval_keys, metric_key
from rlhf.demo.workers import Job
from rlhf.eval.winrate import bootstrap_interval
from rlhf.world.evaluate import (
    cut_at_stop, flag_rates, gold_scores, pair_accuracy, preferences, toxicity, truthfulness,
)

log = logging.getLogger("rlhf.demo")
RIGHT = 1.0 - 1e-9  # a gold score of 1: every check of the task met (partial credit scores less)


# -- models ----------------------------------------------------------------------------------
def load_lm(path: str):
    from rlhf.core.models import load_causal_lm, load_tokenizer

    return load_causal_lm(path, dropout=0.0).eval(), load_tokenizer(path)


def sample_texts(model, tokenizer, prompts: list[str], max_new_tokens: int, temperature: float, seed: int,
                 batch_size: int = 64) -> list[str]:
    """One sampled response per prompt (KV cache, the seeded noise of `rlhf.eval`)."""
    from rlhf.eval.config import EvalConfig
    from rlhf.eval.run import sample_model

    config = EvalConfig(max_new_tokens=max_new_tokens, max_length=model.config.max_position_embeddings,
                        temperature=temperature, batch_size=batch_size, seed=seed)
    return sample_model(model, tokenizer, prompts, config).texts


def tuned_prompts(prompts: list[str], config) -> list:
    """Prompts as the fine-tuned models (SFT, reward model, PPO) read them: one-turn conversations in the base
    tokenizer's chat template with config.chat, else plain as the base models read them."""
    from rlhf.world.datasets import chat_prompt

    return [chat_prompt(p) for p in prompts] if config.chat else list(prompts)


def tuned_records(records: list[dict], config) -> list[dict]:
    """Prompt records (comparisons) as the reward model reads them: `tuned_prompts` applied to each record."""
    from rlhf.world.datasets import chat_records

    return chat_records(records) if config.chat else records


def mean_interval(values: list[float], seed: int = 0, resamples: int = 1000) -> tuple[float, float, float]:
    """(mean, low, high): the 95% percentile bootstrap over prompts."""
    low, high = bootstrap_interval(values, resamples, seed)
    return sum(values) / len(values), low, high


@torch.no_grad()
def nlp_task_accuracy(model, tokenizer, tasks: list[dict], batch_size: int = 256) -> float:
    """The world's public NLP tasks: pick the choice whose tokens the model finds most likely
    after the prompt (how GPT-3 was scored on multiple-choice cloze tasks)."""
    rows, owners = [], []
    for t, task in enumerate(tasks):
        prompt_ids = tokenizer(task["prompt"], add_special_tokens=False)["input_ids"]
        for c, choice in enumerate(task["choices"]):
            full = tokenizer(f"{task['prompt']} {choice}", add_special_tokens=False)["input_ids"]
            rows.append((full, len(prompt_ids)))
            owners.append((t, c))
    scores = []
    model.eval()
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        T = max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), T), tokenizer.pad_token_id, dtype=torch.long)  # (b, T)
        mask = torch.zeros((len(chunk), T), dtype=torch.long)  # (b, T)
        for b, (r, _) in enumerate(chunk):
            ids[b, : len(r)], mask[b, : len(r)] = torch.tensor(r), 1
        logprobs = model(input_ids=ids, attention_mask=mask).logits.log_softmax(-1)  # (b, T, V)
        for b, (r, p) in enumerate(chunk):
            # the choice's tokens r[p:] are predicted at positions p-1 .. len(r)-2
            scores.append(sum(float(logprobs[b, t - 1, r[t]]) for t in range(p, len(r))))
    best: dict[int, tuple[float, int]] = {}
    for (t, c), s in zip(owners, scores):
        if t not in best or s > best[t][0]:
            best[t] = (s, c)
    return sum(best[t][1] == task["answer"] for t, task in enumerate(tasks)) / len(tasks)


def text_perplexity(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 64) -> float:
    """exp(mean next-token loss) over every token of held-out web text (with EOS)."""
    from rlhf.eval.run import perplexity as eval_perplexity

    eos = [tokenizer.eos_token_id]
    docs = [(ids + eos)[:max_length] for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return eval_perplexity(model, [d for d in docs if len(d) >= 2], tokenizer.pad_token_id, batch_size)


def rm_accuracy(reward_model, comparisons: list[dict], max_length: int) -> float:
    """Share of the rankings' (better, worse) pairs that the reward model orders the same way
    (ties of the reward model count half)."""
    prompts = [c["prompt"] for c in comparisons for _ in c["responses"]]
    responses = [x for c in comparisons for x in c["responses"]]
    scores = reward_model.score(prompts, responses, batch_size=64, max_length=max_length)
    per_ranking, start = [], 0
    for c in comparisons:
        per_ranking.append(scores[start : start + len(c["responses"])])
        start += len(c["responses"])
    return pair_accuracy(comparisons, per_ranking)


def kl_at_peak(kls: list[float], golds: list[float]) -> tuple[float, float]:
    """(KL, gold) where the gold reward of the PPO run peaked (smoothed over 3 iterations)."""
    if not golds:
        return float("nan"), float("nan")
    smooth = [sum(golds[max(0, i - 1) : i + 2]) / len(golds[max(0, i - 1) : i + 2]) for i in range(len(golds))]
    i = max(range(len(smooth)), key=smooth.__getitem__)
    return kls[i], smooth[i]


# -- the report's sections -----------------------------------------------------------------
def model_texts(key: tuple[str, str], path: str, prompts: list[str], config) -> tuple:
    """A worker's job: one model's response to every evaluation prompt. The prompted baseline answers
    behind the few-shot prefix and stops at the next question."""
    model, tok = load_lm(path)
    out = sample_texts(model, tok, prompts, config.max_new_tokens, config.temperature, seed=config.seed + 7)
    return "texts", key, [cut_at_stop(t) for t in out] if key[0] == "gpt_prompted" else out


def model_tax(key: tuple[str, str], path: str, data: Path) -> tuple:
    """A worker's job, section 4: perplexity on held-out web text and accuracy on the world's public NLP tasks."""
    heldout = [json.loads(line)["text"] for line in (data / "pretrain_heldout.jsonl").read_text().splitlines()][:500]
    nlp = [json.loads(line) for line in (data / "nlp_tasks.jsonl").read_text().splitlines()]
    model, tok = load_lm(path)
    return "tax", key, {"ppl": text_perplexity(model, tok, heldout, model.config.max_position_embeddings),
                        "nlp": nlp_task_accuracy(model, tok, nlp)}


def evaluation_jobs(world, records: list[dict], paths: dict, data: Path, config) -> list[Job]:
    """Sampling (and, for the models whose tax is measured, the tax) of each model, one job each."""
    jobs = []
    for (name, size), path in paths.items():
        prompts = [world.prompted(r["prompt"]) if name == "gpt_prompted" else r["prompt"] for r in records]
        prompts = prompts if name in BASE_MODELS else tuned_prompts(prompts, config)
        jobs.append(Job(f"sample {name} {size}", model_texts, ((name, size), path, prompts, config)))
        if name in TAX_MODELS:
            jobs.append(Job(f"tax {name} {size}", model_tax, ((name, size), path, data)))
    return jobs


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


def evaluate_models(world, sets: dict, paths: dict, results: list[tuple], runs: Path, config, metrics: dict) -> dict:
    """Fill `metrics` (sections 1, 2, 4, 5, 6) from the evaluation jobs' `results` and return what the report
    shows besides numbers."""
    sizes = config.run_sizes
    small, largest = sizes[0], sizes[-1]
    ev, truth, harmful = sets["eval"], sets["truth"], sets["harmful"]
    records = ev + truth + harmful
    texts = {key: value for kind, key, value in results if kind == "texts"}
    texts = {key: texts[key] for key in paths}  # the models' order, whatever order the workers finished in
    n1, n2 = len(ev), len(ev) + len(truth)
    parts = {key: (t[:n1], t[n1:n2], t[n2:]) for key, t in texts.items()}
    baseline = parts[("sft", largest)][0]
    golds = {}

    for (name, size), (t_eval, t_truth, t_harm) in parts.items():
        # 1. Figure 1: held-out labelers' preference over the largest SFT model
        keys = interval_keys("winrate", name, size)
        metrics.update(zip(keys, mean_interval(preferences(world, ev, t_eval, baseline), config.seed)))
        # 2. Figure 4: metadata flags under the gold standard
        for flag, rate in flag_rates(world, ev, t_eval, FIGURE4_FLAGS).items():
            metrics[metric_key("flags", flag, name, size)] = rate
        golds[(name, size)] = gold_scores(world, ev, t_eval)
        metrics[metric_key("gold", "score", name, size)] = sum(golds[(name, size)]) / n1
        metrics[metric_key("gold", "right", name, size)] = sum(g >= RIGHT for g in golds[(name, size)]) / n1
        # 6. truthfulness and toxicity
        for what, rate in truthfulness(world, truth, t_truth).items():
            metrics[metric_key("truth", what, name, size)] = rate
        metrics[metric_key("toxicity", "rate", name, size)] = toxicity(world, ev, t_eval)
        metrics[metric_key("toxicity", "harmful_prompts", name, size)] = toxicity(world, harmful, t_harm)
        declined = 1 - flag_rates(world, harmful, t_harm, ("fails_instruction",))["fails_instruction"]
        metrics[metric_key("harmful", "declined", name, size)] = declined

    # 1b. the headline, head to head: the smallest PPO-ptx against the largest base model
    for base in HEADLINE_BASELINES:
        prefs = preferences(world, ev, parts[("ppo_ptx", small)][0], parts[(base, largest)][0])
        keys = interval_keys("head2head", "ppo_ptx", small, "vs", base, largest)
        metrics.update(zip(keys, mean_interval(prefs, config.seed)))

    # 4. alignment tax
    for kind, (name, size), value in results:
        if kind == "tax":
            metrics[metric_key("tax", "ppl", name, size)] = value["ppl"]
            metrics[metric_key("tax", "nlp", name, size)] = value["nlp"]

    # 5. over-optimisation: gold vs reward-model score against KL over each PPO run
    by_id = {r["id"]: r for r in sets["ppo_train"]}
    curves = {}
    for size in sizes:
        for name in RL_MODELS:
            curve = overoptimisation_curve(world, runs / f"{name}-{size}", by_id)
            curves[f"{name}_{size}"] = curve
            if curve:
                kl, gold = kl_at_peak([c["kl"] for c in curve], [c["gold"] for c in curve])
                metrics[metric_key("overopt", "gold_first", name, size)] = curve[0]["gold"]
                metrics[metric_key("overopt", "gold_last", name, size)] = curve[-1]["gold"]
                metrics[metric_key("overopt", "gold_peak", name, size)] = gold
                metrics[metric_key("overopt", "kl_at_gold_peak", name, size)] = kl
                metrics[metric_key("overopt", "kl_last", name, size)] = curve[-1]["kl"]
    examples = example_rows(world, records, texts, sizes, n1)
    by_task = {f"{name}_{largest}": gold_by_task(ev, golds[(name, largest)]) for name in ("sft", *RL_MODELS)}
    return {"curves": curves, "examples": examples, "by_task": by_task}


def gold_by_task(records: list[dict], golds: list[float]) -> dict[str, tuple[int, float, float]]:
    """{task type: (prompts, mean gold score, share fully right)}, most frequent type first: where a model's
    answers go wrong."""
    groups: dict[str, list[float]] = {}
    for r, g in zip(records, golds):
        groups.setdefault(r["task"]["type"], []).append(g)
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return {kind: (len(v), sum(v) / len(v), sum(g >= RIGHT for g in v) / len(v)) for kind, v in ordered}


EXAMPLE_KINDS = ("socks", "decline", "open_qa", "brainstorming", "generation", "chat", "closed_qa", "rewrite")


def example_rows(world, records: list[dict], texts: dict, sizes: list[str], n_eval: int) -> list[dict]:
    """A few prompts with several models' answers and each answer's gold score, for the report: the first socks
    question, the first harmful request, and the first eval prompt of each of a few categories."""
    wanted, seen = [], set()
    for i, r in enumerate(records):
        kind = "socks" if r["task"].get("premise") == "socks" else r["task"]["type"] if i >= n_eval else r["category"]
        if kind in seen or kind not in EXAMPLE_KINDS:
            continue
        seen.add(kind)
        wanted.append(i)
    small, largest = sizes[0], sizes[-1]
    shown = [("gpt", largest), ("gpt_prompted", largest), ("sft", small), ("ppo_ptx", small), ("sft", largest),
             ("ppo", largest), ("ppo_ptx", largest)]
    shown = list(dict.fromkeys(shown))  # one size: no duplicates
    rows = []
    for i in wanted:
        answers = {f"{m}_{s}": texts[(m, s)][i] for m, s in shown}
        golds = gold_scores(world, [records[i]] * len(answers), list(answers.values()))
        rows.append({"prompt": records[i]["prompt"], "answers": answers, "gold": dict(zip(answers, golds))})
    return rows
