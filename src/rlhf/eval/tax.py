"""`rlhf eval tax`: the alignment tax with lm-evaluation-harness (paper section 4.2, Figure 28).

Every model, the baseline too, runs the same lm-eval tasks with the same few-shot examples
(seeded). Each metric lm-eval reports becomes tax/<task>/<metric>/<name>, with lm-eval's own
standard error beside it (tax/<task>/<metric>_stderr/<name>; the 95% interval in report.md is
+-1.96 of it), and the tax is the difference from the baseline.
-> metrics.json, report.md, tax/<name>/results.json (lm-eval's results and task configs),
   tax/<name>/samples_<task>.jsonl (every prompt lm-eval built, the model's answer and its score)
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch

from rlhf.config import ConfigError
from rlhf.core.io import atomic_write_jsonl, atomic_write_text
from rlhf.core.models import model_source
from rlhf.core.run import Run
from rlhf.eval.winrate import model_labels
from rlhf.inputs import prompt_tokenizers

log = logging.getLogger("rlhf.eval")


def _plain(x):
    """lm-eval's numpy scalars and tuples -> JSON."""
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x if isinstance(x, (str, int, float, bool, type(None))) else str(x)


def task_metrics(results: dict, name: str) -> dict[str, float]:
    """lm-eval's {task: {"acc,none": v, "acc_stderr,none": s, ...}} -> tax/<task>/<metric>/<name>;
    a filter other than "none" joins the metric name (exact_match_strict-match)."""
    out = {}
    for task, values in results.items():
        for key, value in values.items():
            metric, _, filt = key.partition(",")
            if not filt or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if math.isnan(float(value)):
                continue
            stderr = metric.endswith("_stderr")
            base = metric.removesuffix("_stderr")
            full = base if filt == "none" else f"{base}_{filt}"
            out[f"tax/{task}/{full}{'_stderr' if stderr else ''}/{name}"] = float(value)
    return out


def evaluate(path: str, config, task_manager, tokenizer=None) -> dict:
    """lm-eval on the model at `path`; `tokenizer` (ours, with chat_template's template) when prompts are chat."""
    import lm_eval

    model_args = {"pretrained": path, "dtype": "bfloat16" if config.precision == "bf16" else "float32"}
    if tokenizer is not None:
        model_args["tokenizer"] = tokenizer
    result = lm_eval.simple_evaluate(
        model="hf", model_args=model_args,
        tasks=list(config.tasks), num_fewshot=None if config.num_fewshot < 0 else config.num_fewshot,
        batch_size=config.batch_size, device="cuda" if torch.cuda.is_available() else "cpu",
        limit=config.limit or None, log_samples=True, task_manager=task_manager,
        apply_chat_template=bool(config.chat_template), random_seed=config.seed, numpy_random_seed=config.seed,
        torch_random_seed=config.seed, fewshot_random_seed=config.seed,
    )
    if tokenizer is not None:  # results.json names the template, not the tokenizer object's repr
        result.get("config", {}).get("model_args", {})["tokenizer"] = f"{path}, chat_template={config.chat_template}"
    return result


def main(config, out: str, resume: bool = False) -> dict[str, float]:
    # --- setup -------------------------------------------------------------------
    try:
        from lm_eval.tasks import TaskManager
    except ImportError as e:
        raise ConfigError(f"rlhf eval tax needs lm-evaluation-harness: pip install -e .[eval] ({e})") from None
    run = Run(out, config, True, resume=False)
    out = Path(out)
    baseline = config.baseline or config.models[0]
    paths = list(config.models) + ([] if baseline in config.models else [baseline])
    given = list(config.labels) + ["baseline"] * (len(paths) - len(config.models)) if config.labels else None
    names = model_labels(paths, given)
    base_name = names[paths.index(baseline)]
    # every model folder and template before the first model runs (the default tasks take hours per model)
    tokenizers = prompt_tokenizers(paths, config.chat_template) if config.chat_template else [None] * len(paths)
    for path in paths:
        model_source(path)
    if config.include_path and not Path(config.include_path).is_dir():
        raise ConfigError(f"include_path={config.include_path}: no such folder of lm-eval task YAMLs")
    task_manager = TaskManager(include_path=config.include_path or None, include_defaults=config.builtin_tasks)

    # --- evaluate each model -------------------------------------------------------
    metrics: dict[str, float] = {}
    for name, path, tokenizer in zip(names, paths, tokenizers):
        try:
            result = evaluate(path, config, task_manager, tokenizer)
        except (KeyError, ValueError) as e:  # lm-eval's word for an unknown task or a bad task file
            raise ConfigError(f"lm-eval could not run tasks {list(config.tasks)} on {path}: {e}") from None
        folder = out / "tax" / name
        for task, rows in (result.get("samples") or {}).items():
            atomic_write_jsonl(folder / f"samples_{task}.jsonl", [_plain(r) for r in rows])
        kept = {k: _plain(v) for k, v in result.items() if k not in ("samples", "pretty_env_info")}
        atomic_write_text(folder / "results.json", json.dumps(kept, indent=2, ensure_ascii=False) + "\n")
        metrics.update(task_metrics(result["results"], name))
        log.info("%s (%s): %s", name, path, {k: round(v, 4) for k, v in metrics.items() if k.endswith(f"/{name}")})

    # the tax: each model's score minus the baseline's
    for key in [k for k in metrics if k.endswith(f"/{base_name}") and "_stderr/" not in k]:
        stem = key.removesuffix(f"/{base_name}")
        for name in names:
            if f"{stem}/{name}" in metrics:
                task_metric = stem.removeprefix("tax/")
                metrics[f"tax/{task_metric}_delta/{name}"] = metrics[f"{stem}/{name}"] - metrics[key]

    # --- finish ------------------------------------------------------------------
    final = run.finish(metrics)
    atomic_write_text(out / "report.md", render(config, metrics, names, paths, base_name))
    return final


def render(config, metrics: dict, names: list[str], paths: list[str], base: str) -> str:
    stems = sorted({k.rsplit("/", 1)[0] for k in metrics if k.startswith("tax/") and not k.rsplit("/", 1)[0].endswith(
        ("_stderr", "_delta"))})
    lines = ["# Alignment tax", "", f"lm-evaluation-harness tasks {', '.join(config.tasks)}; few-shot: "
             f"{'task default' if config.num_fewshot < 0 else config.num_fewshot}; limit: {config.limit or 'all'}; "
             f"chat template: {config.chat_template or 'none, plain text'}; seed {config.seed}. Each cell: the score, its 95% interval (+-1.96 lm-eval standard errors), and the "
             f"difference from the baseline **{base}** (negative: a tax). Every prompt and answer is in "
             "`tax/<model>/samples_<task>.jsonl`.", "",
             "| task / metric | " + " | ".join(f"{n} (`{p}`)" for n, p in zip(names, paths)) + " |",
             "|---" * (len(names) + 1) + "|"]
    for stem in stems:
        cells = []
        for name in names:
            value = metrics.get(f"{stem}/{name}")
            if value is None:
                cells.append("-")
                continue
            stderr = metrics.get(f"{stem}_stderr/{name}")
            cell = f"{value:.3f}" + (f" [{value - 1.96 * stderr:.3f}, {value + 1.96 * stderr:.3f}]" if stderr else "")
            if name != base and f"{stem}_delta/{name}" in metrics:
                cell += f" ({metrics[f'{stem}_delta/{name}']:+.3f})"
            cells.append(cell)
        lines.append(f"| {stem.removeprefix('tax/')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
