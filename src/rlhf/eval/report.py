"""report.md of an evaluation folder, from its config.yaml and metrics.json: the numbers with
their intervals, what produced them (models, prompts, decoding, judge), and, first, any reason
not to trust them. `rlhf eval` writes it; `rlhf eval report` rewrites it with the human labels."""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

from rlhf.config import ConfigError, build
from rlhf.core.io import atomic_write_text
from rlhf.data import FLAGS, RecordError
from rlhf.eval.config import EvalConfig
from rlhf.eval.human import FIGURE4, KEY_FILE
from rlhf.eval.winrate import resolve_models


def load_eval(folder: Path) -> tuple[EvalConfig, dict]:
    """The config and metrics of an `rlhf eval` folder."""
    config_file, metrics_file = folder / "config.yaml", folder / "metrics.json"
    if not config_file.exists() or not metrics_file.exists():
        raise FileNotFoundError(f"{folder} holds no `rlhf eval` run (config.yaml and metrics.json)")
    config = build(EvalConfig, yaml.safe_load(config_file.read_text()) or {})
    return config, json.loads(metrics_file.read_text())


FILES = {
    "samples.jsonl": "every response beside its exact prompt (formats.md samples)",
    "judgments.jsonl": "the model judge's exact prompts, replies and verdicts, in both orders",
    KEY_FILE: "the human tasks and the key that unblinds them (never given to the labeling app)",
    "metrics.json": "every number above (docs/metrics.md)",
    "config.yaml": "the settings of this evaluation",
    "winrate.png": "the judge's win rates", "human_winrate.png": "the human win rates",
    "human_flags.png": "the Figure 4 flag rates", "training.png": "reward and KL over the PPO runs",
}


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _interval(m: dict, what: str, rest: str, digits: int = 3) -> str:
    """`0.620 [0.540, 0.700]` from <what>/<rest> and its _low/_high keys, or - when absent."""
    section, _, kind = what.rpartition("/")
    value = m.get(f"{what}/{rest}")
    if value is None:
        return "-"
    low, high = m.get(f"{section}/{kind}_low/{rest}"), m.get(f"{section}/{kind}_high/{rest}")
    return f"{_num(value, digits)} [{_num(low, digits)}, {_num(high, digits)}]" if low is not None else _num(value, digits)


def judge_description(config: EvalConfig) -> str:
    spec = config.judge or config.reward_model
    if not spec:
        return "none (human labelers only)"
    if spec.startswith("openai:"):
        return f"`{spec}`, asked in both orders, prompt `{config.judge_prompt}`"
    kind = "reward model" if not config.judge or Path(spec).exists() else "Python callable"
    return f"{kind} `{spec}`"


def warnings(config: EvalConfig, m: dict, names: list[str]) -> list[str]:
    """The lines a reader must see before any number."""
    lines = []
    trained = [n for n in names if m.get(f"eval/judge_is_training_rm/{n}")]
    if trained:
        lines.append(f"**Warning: the judge is the reward model that {', '.join(trained)} was trained against.** "
                     "Its win rates measure how far PPO pushed that reward model, not whether the responses are "
                     "better: a policy that over-optimises it wins while getting worse (docs/demo.md measures this). "
                     "Judge with human labelers (`label_db=`), a model judge (`judge=openai:...`) or a reward model "
                     "trained on other comparisons.")
    rewarded = [n for n in names if m.get(f"eval/reward_is_training_rm/{n}")]
    if rewarded:
        lines.append(f"`eval/reward` of {', '.join(rewarded)} is the score PPO maximised (the same reward model): "
                     "an objective, not an evaluation.")
    return lines


def render(folder: Path) -> str:
    config, m = load_eval(folder)
    paths, names, base = resolve_models(config)
    out = ["# Evaluation", ""]
    for line in warnings(config, m, names):
        out += [f"> {line}", ">"]
    if out[-1] == ">":
        out[-1] = ""
    out += [f"Baseline: **{base}**. Prompts: `{config.prompts_file}`"
            f"{f' (first {config.num_prompts})' if config.num_prompts else ''}. Decoding, the same for every model: "
            f"temperature {config.temperature}, top_p {config.top_p}, at most {config.max_new_tokens} new tokens, "
            f"seed {config.seed}. Judge: {judge_description(config)}. Intervals are 95% percentile bootstraps over "
            f"prompts ({config.num_bootstrap} resamples).", ""]
    out += ["| model | path | win rate vs baseline [95%] | reward | KL to reference | length | perplexity |",
            "|---|---|---|---|---|---|---|"]
    for name, path in zip(names, paths):
        out.append(f"| {name} | `{path}` | {_interval(m, 'eval/winrate', name)} | {_num(m.get(f'eval/reward/{name}'))} "
                   f"| {_num(m.get(f'eval/kl/{name}'))} | {_num(m.get(f'eval/length/{name}'), 1)} "
                   f"| {_num(m.get(f'eval/perplexity/{name}'), 2)} |")
    if any(k.startswith("eval/judge_first/") for k in m):
        out += ["", "Position bias of the judge (share of its verdicts for the response shown first; 0.5 is none, "
                "and asking in both orders cancels it): " + ", ".join(
                    f"{n} {_num(m[f'eval/judge_first/{n}'])} ({_num(m.get(f'eval/judge_unparsed/{n}'))} unreadable)"
                    for n in names if f"eval/judge_first/{n}" in m) + "."]
    out += human_section(m, names, base, folder)
    out += ["", "## Files", ""] + [f"- `{f}`: {what}" for f, what in FILES.items() if (folder / f).exists()] + [""]
    return "\n".join(out)


def human_section(m: dict, names: list[str], base: str, folder: Path) -> list[str]:
    if "human/labelers" not in m:
        if (folder / KEY_FILE).exists():
            return ["", "## Human evaluation", "", f"Tasks are in the labeling app; once labeled, run "
                    f"`rlhf label export --kind comparisons --out labels.jsonl` and "
                    f"`rlhf eval report --out {folder} --labels labels.jsonl`."]
        return []
    judged = sum(m.get(f"human/judgments/{n}", 0) for n in names)
    tasks = sum(m.get(f"human/tasks/{n}", 0) for n in names)
    out = ["", "## Human evaluation", "",
           f"{int(judged)} judgments on {int(tasks)} blinded tasks by {int(m['human/labelers'])} labeler(s). "
           f"Inter-labeler agreement on the overlapped tasks: {_num(m.get('human/agreement'))} "
           f"[{_num(m.get('human/agreement_low'))}, {_num(m.get('human/agreement_high'))}] over "
           f"{int(m.get('human/agreement_pairs', 0))} labeler pairs (ties left out; the paper's labelers agreed 72.6%).", "",
           f"| model | win rate vs {base} [95%] | judgments | identical to baseline | Likert 1-7 [95%] |", "|---|---|---|---|---|"]
    for n in names:
        rate = "(baseline)" if n == base else _interval(m, 'human/winrate', n)
        out.append(f"| {n} | {rate} | {int(m.get(f'human/judgments/{n}', 0))} "
                   f"| {int(m.get(f'human/identical/{n}', 0))} | {_interval(m, 'human/likert', n, 2)} |")
    out += ["", "Metadata (the paper's Figure 4), share of each model's rated responses [95%]:", "",
            "| model | " + " | ".join(label for label, _, _ in FIGURE4) + " |", "|---" * (len(FIGURE4) + 1) + "|"]
    for n in names:
        cells = [_figure4_cell(m, flag, n, inverted) for _, flag, inverted in FIGURE4]
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    out += ["", "Every flag (share of rated responses):", "", "| model | " + " | ".join(FLAGS) + " |",
            "|---" * (len(FLAGS) + 1) + "|"]
    for n in names:
        out.append(f"| {n} | " + " | ".join(_num(m.get(f"human/flag/{f}/{n}")) for f in FLAGS) + " |")
    return out


def _figure4_cell(m: dict, flag: str, name: str, inverted: bool) -> str:
    value = m.get(f"human/flag/{flag}/{name}")
    if value is None:
        return "-"
    low, high = m[f"human/flag_low/{flag}/{name}"], m[f"human/flag_high/{flag}/{name}"]
    if inverted:  # "attempts correct instruction" is the share *without* fails_instruction
        value, low, high = 1 - value, 1 - high, 1 - low
    return f"{_num(value)} [{_num(low)}, {_num(high)}]"


def write_report(folder: str | Path) -> Path:
    folder = Path(folder)
    path = folder / "report.md"
    atomic_write_text(path, render(folder))
    return path


def main(config, out: str, resume: bool = False) -> dict[str, float]:
    """`rlhf eval report`: the human labels of --out's tasks into its metrics.json, plots and report.md."""
    from rlhf.core.io import atomic_write_json
    from rlhf.core.run import setup_logging
    from rlhf.eval.human import human_metrics, judgments, read_key
    from rlhf.eval.plots import plot_flags, plot_winrates

    setup_logging()
    folder = Path(out)
    try:
        eval_config, metrics = load_eval(folder)
        key = read_key(folder)
        found, other = judgments(key, config.labels)
    except (RecordError, FileNotFoundError) as e:  # the user's files: say which and where, no traceback
        raise ConfigError(str(e)) from None
    paths, names, base = resolve_models(eval_config)
    if not found:
        raise ConfigError(f"{config.labels}: none of its {other} records is a task of the evaluation in {folder} "
                         f"(its tasks are in {folder / KEY_FILE})")
    human = human_metrics(key, found, names, base, eval_config.num_bootstrap, eval_config.seed)
    human["human/other_records"] = float(other)  # other tasks in the same app, left out
    metrics = {k: v for k, v in metrics.items() if not k.startswith("human/")} | human  # a rerun replaces, never mixes
    atomic_write_json(folder / "metrics.json", metrics)
    rated = [n for n in names if f"human/winrate/{n}" in human]
    if rated:
        plot_winrates(rated, [human[f"human/winrate/{n}"] for n in rated], [human[f"human/winrate_low/{n}"] for n in rated],
                      [human[f"human/winrate_high/{n}"] for n in rated], base, folder / "human_winrate.png",
                      title="human labelers' win rate (95% bootstrap interval)")
    plot_flags(names, human, FIGURE4, folder / "human_flags.png")
    write_report(folder)
    return human
