"""`rlhf eval`: sample each model on held-out prompts, then measure.

1. sample every model on the same prompts with the same random numbers
2. perplexity of each model on held-out pretraining text (the alignment tax)
3. KL of each model's responses to the reference policy
4. reward-model score of every response
5. win rate of each model against the baseline under the judge, bootstrap 95% interval
6. blinded comparison tasks for human labelers in the labeling app (label_db)
-> metrics.json, report.md, samples.jsonl (formats: samples), judgments.jsonl, human_tasks.jsonl,
   winrate.png, training.png
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from rlhf.core.generate import decode_responses, episode_noise, sample
from rlhf.core.io import atomic_write_jsonl
from rlhf.core.lm import response_logits
from rlhf.core.models import load_causal_lm, load_tokenizer
from rlhf.core.ops import pad_rows, token_logprobs
from rlhf.core.run import Run
from rlhf.core.tokens import encode_prompt, fit_prompt
from rlhf.core.train import seed_everything
from rlhf.core.vllm_engine import episode_seed
from rlhf.data import read_records
from rlhf.data.pretraining import load_pretrain
from rlhf.eval.config import EvalConfig
from rlhf.eval.guard import training_rm_matches
from rlhf.eval.human import KEY_FILE, comparison_tasks, prompt_id, send_tasks
from rlhf.eval.judges import judge_folder, make_judge, position_stats
from rlhf.eval.plots import plot_training, plot_winrates, read_history
from rlhf.eval.report import write_report
from rlhf.eval.winrate import bootstrap_interval, judge_all, outcomes, resolve_models
from rlhf.inputs import check_eval

log = logging.getLogger("rlhf.eval")


@dataclass
class Samples:
    """One model's responses to the eval prompts."""

    prompt_ids: torch.Tensor  # (N, P) left-padded
    prompt_mask: torch.Tensor  # (N, P)
    response_ids: torch.Tensor  # (N, R) right-padded
    response_mask: torch.Tensor  # (N, R)
    texts: list[str]
    logprobs: torch.Tensor  # (N,) summed log-prob of each response under its model, with temperature


@torch.no_grad()
def sample_model(model, tokenizer, prompts: list, config: EvalConfig, sampler=None) -> Samples:
    """Same prompts, decoding and random numbers for every model (common random numbers make
    the comparison less noisy than independent draws). `sampler`: a vLLM engine holding this
    model (generation_backend=vllm), else our sampler runs `model`."""
    budget = config.max_length - config.max_new_tokens
    ids = [fit_prompt(encode_prompt(tokenizer, p), budget, tokenizer.bos_token_id) for p in prompts]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    parts = []
    for i in range(0, len(ids), config.batch_size):
        episodes = list(range(i, min(i + config.batch_size, len(ids))))
        if sampler is not None:
            parts.append(sampler.sample(ids[i : i + config.batch_size], [episode_seed(config.seed, e) for e in episodes],
                                        config.max_new_tokens, config.temperature, config.top_p, eos, pad)[2:])
            continue
        noise = episode_noise(config.seed, episodes, config.max_new_tokens)
        parts.append(sample(model, ids[i : i + config.batch_size], noise, config.temperature, config.top_p, eos, pad)[2:])
    response_ids, response_mask = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])  # (N, R)
    # every prompt padded to the longest of all, as the sampler padded each batch's
    prompt_ids, prompt_mask = (x.to(response_ids.device) for x in pad_rows(ids, pad, left=True))  # (N, P)
    texts = decode_responses(tokenizer, response_ids, response_mask)
    s = Samples(prompt_ids, prompt_mask, response_ids, response_mask, texts, torch.zeros(0))
    s.logprobs = response_logprob(model, s, config)
    return s


@torch.no_grad()
def response_logprob(model, s: Samples, config: EvalConfig) -> torch.Tensor:
    """Summed log-prob of each sampled response under `model`. -> (N,)"""
    out = []
    device = next(model.parameters()).device
    P = s.prompt_ids.shape[1]
    for i in range(0, s.prompt_ids.shape[0], config.batch_size):
        sl = slice(i, i + config.batch_size)
        ids = torch.cat([s.prompt_ids[sl], s.response_ids[sl]], 1).to(device)  # (b, P+R)
        mask = torch.cat([s.prompt_mask[sl], s.response_mask[sl]], 1).to(device)  # (b, P+R)
        lp = token_logprobs(response_logits(model, ids, mask, P), s.response_ids[sl].to(device), config.temperature)
        out.append((lp * s.response_mask[sl].to(device)).sum(-1).cpu())  # (b,)
    return torch.cat(out)


@torch.no_grad()
def perplexity(model, docs: list[list[int]], pad_id: int, batch_size: int) -> float:
    """exp(mean next-token NLL) over every token of the held-out documents."""
    device = next(model.parameters()).device
    nll, tokens = 0.0, 0
    for i in range(0, len(docs), batch_size):
        ids, mask = (x.to(device) for x in pad_rows(docs[i : i + batch_size], pad_id))  # (b, L)
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1]  # (b, L-1, V)
        lp = token_logprobs(logits, ids[:, 1:])  # (b, L-1)
        nll -= float((lp * mask[:, 1:]).sum())
        tokens += int(mask[:, 1:].sum())
    return math.exp(nll / max(tokens, 1))


def make_sampler(config: EvalConfig, path: str):
    """A vLLM engine loaded from `path` for generation_backend=vllm, else None (our sampler)."""
    if config.generation_backend != "vllm":
        return None
    from rlhf.core.vllm_engine import VLLMSampler

    return VLLMSampler(path, config.vllm, max_model_len=config.max_length, seed=config.seed)


def main(config: EvalConfig, out: str, resume: bool = False) -> dict[str, float]:
    # --- setup -------------------------------------------------------------------
    run = Run(out, config, True, resume=False)  # one pass, nothing to resume: --resume just redoes it
    out = Path(out)
    seed_everything(config.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = "bfloat16" if config.precision == "bf16" else "float32"
    paths, names, base_name = resolve_models(config)
    baseline = paths[names.index(base_name)]
    check_eval(config, paths, judge_folder(config))  # every input and every template, before the first samples
    records = read_records(config.prompts_file, "prompt")
    records = records[: config.num_prompts] if config.num_prompts > 0 else records
    prompts = [r["prompt"] for r in records]
    reward_model = None
    if config.reward_model:
        from rlhf.core.reward import load_reward_model

        reward_model = load_reward_model(config.reward_model, device=device)
    judge = make_judge(config, reward_model)
    metrics: dict[str, float] = guard_metrics(config, names, paths)

    # 1-2. sample every model; perplexity while it is loaded
    samples: dict[str, Samples] = {}
    tokenizer = None
    for name, path in zip(names, paths):
        tokenizer = load_tokenizer(path, chat_template=config.chat_template)
        model = load_causal_lm(path, dtype=dtype, dropout=0.0).to(device).eval()
        sampler = make_sampler(config, path)
        samples[name] = sample_model(model, tokenizer, prompts, config, sampler)
        if sampler is not None:
            sampler.close()
        metrics[f"eval/length/{name}"] = float(samples[name].response_mask.sum(-1).float().mean())
        if config.pretrain_file:
            docs = load_pretrain(config.pretrain_file, tokenizer, config.max_length)
            docs = docs[: config.num_pretrain] if config.num_pretrain > 0 else docs
            metrics[f"eval/perplexity/{name}"] = perplexity(model, docs, tokenizer.pad_token_id, config.batch_size)
        log.info("%s (%s): %d responses, mean length %.1f", name, path, len(prompts), metrics[f"eval/length/{name}"])
        del model

    # 3. KL to the reference: E over the model's own samples of log pi(y|x) - log pi_ref(y|x)
    reference = load_causal_lm(config.reference or baseline, dtype=dtype, dropout=0.0).to(device).eval()
    for name, s in samples.items():
        metrics[f"eval/kl/{name}"] = float((s.logprobs - response_logprob(reference, s, config)).mean())
    del reference

    # 4. reward-model score of every response
    rewards: dict[str, list[float]] = {}
    if reward_model is not None:
        for name, s in samples.items():
            rewards[name] = reward_model.score(prompts, s.texts, batch_size=config.batch_size, max_length=config.max_length)
            metrics[f"eval/reward/{name}"] = sum(rewards[name]) / len(rewards[name])

    # 5. win rate against the baseline, ties split, bootstrap 95% interval over prompts
    transcript = []
    if judge is not None:
        for name, s in samples.items():
            results = outcomes(judge_all(judge, prompts, s.texts, samples[base_name].texts))
            low, high = bootstrap_interval(results, config.num_bootstrap, config.seed)
            metrics[f"eval/winrate/{name}"] = sum(results) / len(results)
            metrics[f"eval/winrate_low/{name}"], metrics[f"eval/winrate_high/{name}"] = low, high
            if hasattr(judge, "take_transcript"):  # an endpoint judge: keep what it was asked and said
                rows = [{"model": name, "baseline": base_name, "prompt_id": prompt_id(records[r["index"]], r["index"]),
                         **r} for r in judge.take_transcript()]
                if rows:
                    metrics[f"eval/judge_first/{name}"], metrics[f"eval/judge_unparsed/{name}"] = position_stats(rows)
                transcript += rows

    # 6. blinded comparison tasks for human labelers; the key stays here, never in the app
    if config.label_db:
        key = comparison_tasks(records, names, base_name, {n: s.texts for n, s in samples.items()},
                               config.label_overlap, config.seed, str(out.resolve()))
        atomic_write_jsonl(out / KEY_FILE, key)
        log.info("labeling app %s: %s", config.label_db, send_tasks(config.label_db, key, out))

    # --- finish ------------------------------------------------------------------
    write_outputs(out, config, names, paths, base_name, records, samples, rewards, metrics)
    if transcript:
        atomic_write_jsonl(out / "judgments.jsonl", transcript)
    for key, value in sorted(metrics.items()):
        log.info("%s = %.4f", key, value)
    final = run.finish(metrics)
    write_report(out)
    return final


def guard_metrics(config: EvalConfig, names: list[str], paths: list[str]) -> dict[str, float]:
    """eval/judge_is_training_rm (and per model): 1 when the win-rate judge is the reward model a
    model was trained against; eval/reward_is_training_rm/<name> likewise for eval/reward."""
    metrics = {}
    for what, folder in (("judge", judge_folder(config)), ("reward", config.reward_model)):
        matches = training_rm_matches(folder, names, paths) if folder else {}
        for name in names:
            metrics[f"eval/{what}_is_training_rm/{name}"] = float(name in matches)
        for name, how in matches.items():
            log.warning("%s %s is the reward model %s was trained against (%s): %s", what, folder, name, how,
                        "its verdict measures the optimisation, not quality" if what == "judge" else
                        "eval/reward is the objective PPO maximised, not an evaluation")
    metrics["eval/judge_is_training_rm"] = max(metrics[f"eval/judge_is_training_rm/{n}"] for n in names)
    return metrics


def write_outputs(out: Path, config, names, paths, base_name, records, samples, rewards, metrics) -> None:
    rows = []
    for name in names:
        s = samples[name]
        for i, record in enumerate(records):
            row = {"prompt_id": prompt_id(record, i), "prompt": record["prompt"], "model": name,
                   "response": s.texts[i], "logprob": round(float(s.logprobs[i]), 4)}
            if name in rewards:
                row["reward"] = round(rewards[name][i], 4)
            rows.append(row)
    atomic_write_jsonl(out / "samples.jsonl", rows)
    if f"eval/winrate/{names[0]}" in metrics:
        plot_winrates(names, [metrics[f"eval/winrate/{n}"] for n in names], [metrics[f"eval/winrate_low/{n}"] for n in names],
                      [metrics[f"eval/winrate_high/{n}"] for n in names], base_name, out / "winrate.png")
    histories = {n: read_history(Path(p).parent) for n, p in zip(names, paths) if Path(p.rstrip("/")).name == "final"}
    plot_training(histories, out / "training.png")

