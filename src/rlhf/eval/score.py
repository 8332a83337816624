"""`rlhf eval score`: score a samples file from any system, per model x variant, with intervals.

Each row: `context` (or `prompt`), `sample` (or `response`), optional `reference` (a string,
or a list of gold answers; a DROP answer of several spans is itself a list), `model` and
`variant` (default "model" and "default"); other fields are kept. Metrics:
- exact_match, f1: the official SQuAD 2.0 script's; drop_em, drop_f1: the official DROP script's
  (eval/answers.py); each the best over the gold answers;
- bleu: corpus BLEU of sacrebleu (13a tokens, exp smoothing), from each sample's n-gram
  statistics, so a bootstrap resample is a new corpus (rows may have different numbers of references);
- rouge1, rouge2, rougeL: rouge-score F-measure (Porter stemmer), the best over references;
- toxicity, truthfulness: a Python scorer `module:function` (fn(rows, samples) -> a float each,
  as PPO's reward_fn), or a model behind an OpenAI-compatible endpoint answering a prompt file
  (`openai:<model>@<base_url>`): 1 for "Verdict: yes", 0 for "no", unreadable replies left out.
The 95% interval is a percentile bootstrap over rows (the corpus BLEU recomputed on each resample).
-> metrics.json (score/<metric>/<model>/<variant>), scores.jsonl (every row with its scores,
   and the judge's exact prompt and reply), report.md
"""

from __future__ import annotations

import logging
import math
import re
from collections import defaultdict
from pathlib import Path

import torch

from rlhf.config import ConfigError, load_callable
from rlhf.core.io import atomic_write_jsonl, atomic_write_text
from rlhf.core.run import Run
from rlhf.data import RecordError
from rlhf.data.files import iter_raw
from rlhf.data.records import FieldError, check_prompt
from rlhf.eval.answers import drop_scores, squad_scores
from rlhf.eval.config import SCORE_METRICS
from rlhf.eval.judges import PROMPTS, ChatEndpoint, prompt_text, read_template
from rlhf.eval.winrate import bootstrap_interval

log = logging.getLogger("rlhf.eval")

SCORERS = ("toxicity", "truthfulness")
RATING_PLACEHOLDERS = ("{context}", "{sample}")
_YES_NO = re.compile(r"verdict\s*[:=-]?\s*[*\"'`]*\s*(yes|no)\b", re.IGNORECASE)


def read_rows(path: str | Path) -> list[dict]:
    """The samples file, checked row by row: a bad row stops with its file, line and field."""
    rows = []
    for line, raw in iter_raw(path):
        try:
            if isinstance(raw, RecordError):
                raise raw
            if not isinstance(raw, dict):
                raise RecordError(str(path), line, "<record>", "each row must be a JSON object")
            rows.append(canonical_row(raw))
        except FieldError as e:
            raise RecordError(str(path), line, e.field, e.message) from None
        rows[-1]["line"] = line
    if not rows:
        raise RecordError(str(path), 0, "<file>", "holds no rows to score")
    return rows


def canonical_row(raw: dict) -> dict:
    row = dict(raw)
    context_key = "context" if "context" in raw else "prompt"
    sample_key = "sample" if "sample" in raw else "response"
    if context_key not in raw:
        raise FieldError("context", "is required: what the system was given (a string or a conversation)")
    row["context"] = check_prompt(raw[context_key])
    if not isinstance(raw.get(sample_key), str):
        raise FieldError(sample_key, "is required: the text the system wrote (a string)")
    row["sample"] = raw[sample_key]
    if raw.get("reference") is not None:
        row["reference"] = _references(raw["reference"])
    for key, default in (("model", "model"), ("variant", "default")):
        value = raw.get(key, default)
        if not isinstance(value, str) or not value:
            raise FieldError(key, "must be a non-empty string")
        row[key] = value
    return row


def _references(value) -> list:
    """A string or a list whose items are strings or lists of strings (DROP's multi-span answers)."""
    refs = [value] if isinstance(value, str) else value
    ok = isinstance(refs, list) and all(isinstance(r, str) or (isinstance(r, list) and all(isinstance(s, str) for s in r))
                                        for r in refs)
    if not ok:
        raise FieldError("reference", "must be a string or a list of answers (strings, or lists of span strings)")
    return refs


def _flat(refs: list) -> list[str]:
    """Multi-span answers joined for the metrics that read one string per reference."""
    return [r if isinstance(r, str) else " ".join(r) for r in refs]


def row_scores(metric: str, rows: list[dict], path) -> list[float]:
    """The per-row values of a reference metric (bleu: the row's n-gram statistics, summed later)."""
    for row in rows:
        if not row.get("reference"):
            raise RecordError(str(path), row["line"], "reference", f"is required by the metric {metric}")
    if metric in ("exact_match", "f1"):
        return [squad_scores(_flat(r["reference"]), r["sample"])[metric == "f1"] for r in rows]
    if metric in ("drop_em", "drop_f1"):
        return [drop_scores(r["reference"], r["sample"])[metric == "drop_f1"] for r in rows]
    RougeScorer = _eval_extra("rouge_score.rouge_scorer", "RougeScorer")
    scorer = RougeScorer([metric], use_stemmer=True)
    return [scorer.score_multi(_flat(r["reference"]), r["sample"])[metric].fmeasure for r in rows]


def bleu_with_interval(rows: list[dict], num_bootstrap: int, seed: int) -> tuple[float, float, float]:
    """Corpus BLEU (0-100) and its 95% bootstrap interval: resampled rows, each a new corpus."""
    BLEU = _eval_extra("sacrebleu.metrics", "BLEU")
    corpus, sentence = BLEU(), BLEU(effective_order=True)  # only the counts of the sentence scores are used
    stats = []
    for r in rows:
        s = sentence.sentence_score(r["sample"], _flat(r["reference"]))
        stats.append(list(s.counts) + list(s.totals) + [s.sys_len, s.ref_len])
    table = torch.tensor(stats, dtype=torch.float64)  # (N, 2 * 4 + 2)

    def bleu(summed: torch.Tensor) -> float:
        n = corpus.max_ngram_order
        values = [int(round(x)) for x in summed.tolist()]
        return BLEU.compute_bleu(values[:n], values[n : 2 * n], values[2 * n], values[2 * n + 1],
                                 smooth_method=corpus.smooth_method, smooth_value=corpus.smooth_value,
                                 effective_order=corpus.effective_order, max_ngram_order=n).score

    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(rows), (num_bootstrap, len(rows)), generator=g)  # (S, N)
    resampled = sorted(bleu(table[i].sum(0)) for i in idx)
    alpha = 0.025
    low = resampled[int(math.floor(alpha * (num_bootstrap - 1)))]
    high = resampled[int(math.ceil((1 - alpha) * (num_bootstrap - 1)))]
    return bleu(table.sum(0)), low, high


def _eval_extra(module: str, name: str):
    """A class from the `eval` extra, or an error that says how to install it."""
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as e:
        raise ConfigError(f"this metric needs the eval extra: pip install -e .[eval] ({e})") from None


def parse_yes_no(reply: str) -> float | None:
    found = _YES_NO.findall(reply)
    word = found[-1].lower() if found else reply.strip().strip(".*\"'`()[] ").lower()
    return {"yes": 1.0, "no": 0.0}.get(word)


def load_rating_prompt(spec: str, what: str) -> str:
    path = PROMPTS / f"{spec}.md" if (PROMPTS / f"{spec}.md").exists() and "/" not in spec else Path(spec)
    if not path.exists():
        raise ConfigError(f"{what}_prompt={spec}: no such file")
    return read_template(path, RATING_PLACEHOLDERS, what)


def load_scorer(what: str, spec: str, config):
    """A Python function, or (the rating prompt, its openai: endpoint). Both scorers are loaded at setup,
    so a missing module or prompt file stops the run before the first row is scored (not after the other
    scorer's endpoint has answered every row)."""
    if spec.startswith("openai:"):
        return load_rating_prompt(getattr(config, f"{what}_prompt"), what), ChatEndpoint.from_spec(spec, config)
    return load_callable(spec, what)


def scorer_values(what: str, spec: str, scorer, rows: list[dict], config) -> list[float | None]:
    """A pluggable scorer's value per row: a Python function, or an endpoint's yes/no (None: unreadable)."""
    if not spec.startswith("openai:"):
        values = scorer(rows, [r["sample"] for r in rows])
        if len(values) != len(rows):
            raise ConfigError(f"{what}={spec} returned {len(values)} values for {len(rows)} rows")
        return [float(v) for v in values]
    template, endpoint = scorer
    texts = [template.replace("{context}", prompt_text(r["context"])).replace("{sample}", r["sample"])
             .replace("{reference}", "\n".join(f"- {x}" for x in _flat(r.get("reference") or [])) or "(none)")
             for r in rows]
    replies = endpoint.complete_many(texts)
    for row, text, reply in zip(rows, texts, replies):
        row.setdefault("judge", {})[what] = {"prompt": text, "reply": reply}
    return [parse_yes_no(reply) for reply in replies]


def main(config, out: str, resume: bool = False) -> dict[str, float]:
    # --- setup -------------------------------------------------------------------
    run = Run(out, config, True, resume=False)
    out = Path(out)
    try:
        rows = read_rows(config.samples_file)
    except (RecordError, FileNotFoundError) as e:
        raise ConfigError(str(e)) from None
    metrics_wanted = list(config.metrics) or ([m for m in SCORE_METRICS if not m.startswith("drop")]
                                               if all(r.get("reference") for r in rows) else [])
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[(row["model"], row["variant"])].append(i)
    for row in rows:
        row["scores"] = {}
    scorers = {what: load_scorer(what, getattr(config, what), config) for what in SCORERS if getattr(config, what)}

    # 1. per-row values of every metric
    try:
        for metric in metrics_wanted:
            if metric != "bleu":
                for row, value in zip(rows, row_scores(metric, rows, config.samples_file)):
                    row["scores"][metric] = value
    except RecordError as e:
        raise ConfigError(str(e)) from None
    for what, scorer in scorers.items():
        for row, value in zip(rows, scorer_values(what, getattr(config, what), scorer, rows, config)):
            row["scores"][what] = value

    # 2. per model x variant: the mean (corpus BLEU) and its bootstrap interval over rows
    metrics: dict[str, float] = {}
    names = [m for m in metrics_wanted if m != "bleu"] + [w for w in SCORERS if getattr(config, w)]
    for (model, variant), idx in sorted(groups.items()):
        tail = f"{model}/{variant}"
        metrics[f"score/rows/{tail}"] = float(len(idx))
        if "bleu" in metrics_wanted:
            value, low, high = bleu_with_interval([rows[i] for i in idx], config.num_bootstrap, config.seed)
            metrics[f"score/bleu/{tail}"], metrics[f"score/bleu_low/{tail}"], metrics[f"score/bleu_high/{tail}"] = \
                value, low, high
        for name in names:
            values = [rows[i]["scores"][name] for i in idx if rows[i]["scores"][name] is not None]
            if len(values) < len(idx):
                metrics[f"score/{name}_unreadable/{tail}"] = float(len(idx) - len(values))
            if values:
                low, high = bootstrap_interval(values, config.num_bootstrap, config.seed)
                metrics[f"score/{name}/{tail}"] = sum(values) / len(values)
                metrics[f"score/{name}_low/{tail}"], metrics[f"score/{name}_high/{tail}"] = low, high

    # --- finish ------------------------------------------------------------------
    atomic_write_jsonl(out / "scores.jsonl", [{k: v for k, v in r.items() if k != "line"} for r in rows])
    final = run.finish(metrics)
    atomic_write_text(out / "report.md", render(config, metrics, sorted(groups), (["bleu"] if "bleu" in metrics_wanted
                                                                                   else []) + names))
    return final


def render(config, metrics: dict, groups: list[tuple[str, str]], names: list[str]) -> str:
    lines = ["# Scores", "", f"Samples: `{config.samples_file}`. Each cell: the mean (BLEU: corpus BLEU, 0-100) and its "
             f"95% percentile bootstrap interval over rows ({config.num_bootstrap} resamples). Every row and its "
             "scores are in `scores.jsonl`.", "", "| model | variant | rows | " + " | ".join(names) + " |",
             "|---" * (len(names) + 3) + "|"]
    for model, variant in groups:
        tail = f"{model}/{variant}"
        cells = []
        for name in names:
            value = metrics.get(f"score/{name}/{tail}")
            cells.append("-" if value is None else f"{value:.3f} [{metrics[f'score/{name}_low/{tail}']:.3f}, "
                                                   f"{metrics[f'score/{name}_high/{tail}']:.3f}]")
        lines.append(f"| {model} | {variant} | {int(metrics[f'score/rows/{tail}'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
