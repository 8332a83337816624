"""report.md and its PNG plots for `rlhf demo`: the paper's results section in miniature.

The checks at the top are computed from metrics.json, never written by hand: a result
that did not come out is reported as such, with its numbers.
"""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path

from rlhf.demo.keys import BEST_OF, FIGURE4_FLAGS, HEADLINE_BASELINES, MODELS, RL_MODELS, TAX_MODELS, interval_keys, metric_key
from rlhf.demo.pretrain import SHAPES

RM_GAP_POINTS = 4.0  # "within a few points": the paper's gap was 2.8 (72.4% vs 69.6%)
COLORS = {"gpt": "#999999", "gpt_prompted": "#555555", "sft": "#4c72b0", "ppo": "#dd8452", "ppo_ptx": "#c44e52"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and in tests
    import matplotlib.pyplot as plt

    return plt


def _f(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def interval(metrics: dict, section: str, *parts: str) -> str:
    m, lo, hi = (metrics.get(k, float("nan")) for k in interval_keys(section, *parts))
    return f"{_f(m)} [{_f(lo)}, {_f(hi)}]"


# -- checks ----------------------------------------------------------------------------------
RL_LABELS = {"ppo": "PPO", "ppo_ptx": "PPO-ptx"}  # as the paper writes them


def checks(metrics: dict, sizes: list[str]) -> list[tuple[str, bool, str]]:
    """(claim, came out, the numbers) for each result the issue asks the demo to show."""
    small, largest = sizes[0], sizes[-1]
    out = []
    for base in HEADLINE_BASELINES:
        parts = ("ppo_ptx", small, "vs", base, largest)
        ok = metrics.get(interval_keys("head2head", *parts)[1], 0) > 0.5
        out.append((f"PPO-ptx {small} is preferred to {base.replace('_', ' ')} {largest} (interval clear of 0.5)", ok,
                    interval(metrics, "head2head", *parts)))
    for name in RL_MODELS:
        rows, ok = [], True
        for s in sizes:
            rl, sft = metrics.get(metric_key("winrate", name, s), 0), metrics.get(metric_key("winrate", "sft", s), 1)
            ok &= rl > sft
            rows.append(f"{s}: {_f(rl)} vs {_f(sft)}")
        apart = (metrics.get(interval_keys("winrate", name, largest)[1], 0)
                 > metrics.get(interval_keys("winrate", "sft", largest)[2], 1))
        out.append((f"{RL_LABELS[name]} beats SFT at every size (intervals apart at {largest})",
                    ok and apart, "; ".join(rows) + f"; {largest} intervals: {interval(metrics, 'winrate', name, largest)}"
                    f" vs {interval(metrics, 'winrate', 'sft', largest)}"))
    rows, ok = [], True
    for s in sizes:
        ppo, ptx, base = (metrics.get(metric_key("tax", "ppl", m, s), float("nan")) for m in ("ppo", "ppo_ptx", "gpt"))
        ok &= ptx < ppo
        rows.append(f"{s}: perplexity PPO-ptx {_f(ptx, 2)} vs PPO {_f(ppo, 2)} (base {_f(base, 2)})")
    out.append(("PPO-ptx has a smaller alignment tax than PPO (held-out perplexity)", ok, "; ".join(rows)))
    train, held = metrics.get("rm/accuracy_train_labelers", 0), metrics.get("rm/accuracy_heldout_labelers", 0)
    out.append((f"held-out labelers' RM accuracy within {RM_GAP_POINTS:.0f} points of the training labelers'",
                abs(train - held) * 100 <= RM_GAP_POINTS, f"held-out {100 * held:.1f}% vs training {100 * train:.1f}%"))
    return out + answer_checks(metrics, largest)


def answer_checks(metrics: dict, largest: str) -> list[tuple[str, bool, str]]:
    """Two bars on the answers themselves, by the gold standard rather than by preference: PPO's answers better
    than SFT's, and most of both fully right."""
    gold = {m: metrics.get(metric_key("gold", "score", m, largest), float("nan")) for m in ("sft", "ppo")}
    right = {m: metrics.get(metric_key("gold", "right", m, largest), float("nan")) for m in ("sft", "ppo")}
    return [(f"PPO {largest}'s gold score above SFT {largest}'s", gold["ppo"] > gold["sft"],
             f"{_f(gold['ppo'])} vs {_f(gold['sft'])}"),
            (f"SFT and PPO {largest} fully right on most eval prompts (gold score 1)",
             right["sft"] > 0.5 and right["ppo"] > 0.5, f"SFT {_f(right['sft'], 2)}, PPO {_f(right['ppo'], 2)}")]


# -- plots -----------------------------------------------------------------------------------
def plot_figure1(metrics: dict, sizes: list[str], params: dict, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    x = [params[s] for s in sizes]
    for name in MODELS:
        y, lo, hi = ([metrics[interval_keys("winrate", name, s)[i]] for s in sizes] for i in range(3))
        lo, hi = [a - b for a, b in zip(y, lo)], [b - a for a, b in zip(y, hi)]
        ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=4, label=name.replace("_", "-"), color=COLORS[name])
    ax.axhline(0.5, color="gray", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel(f"win rate against SFT {sizes[-1]}")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("held-out labelers' preference (95% bootstrap)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_grouped(metrics: dict, sizes: list[str], keys: list[tuple[str, str]], models: tuple, path: Path,
                 ylabel: str) -> None:
    """One panel per ((section, name), title), bars per model, groups per size."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(3.3 * len(keys), 3.4), squeeze=False)
    width = 0.8 / len(models)
    for ax, (prefix, title) in zip(axes[0], keys):  # prefix: (section, name)
        for j, name in enumerate(models):
            ys = [metrics.get(metric_key(*prefix, name, s), float("nan")) for s in sizes]
            ax.bar([i + j * width for i in range(len(sizes))], ys, width, label=name.replace("_", "-"),
                   color=COLORS[name])
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(sizes))], sizes)
        ax.set_title(title, fontsize=9)
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def binned(xs: list[float], ys: list[float], bins: int = 5) -> tuple[list[float], list[float]]:
    """Means of y over equal-count bins of x, in x order: the trend through noisy per-iteration points."""
    pts = sorted(zip(xs, ys))
    size = max(1, -(-len(pts) // bins))
    groups = [pts[i : i + size] for i in range(0, len(pts), size)]
    return [sum(x for x, _ in g) / len(g) for g in groups], [sum(y for _, y in g) / len(g) for g in groups]


def plot_overopt(curves: dict, path: Path) -> bool:
    """One panel per PPO run (rows: PPO, PPO-ptx; columns: sizes): each iteration's mean
    reward-model and gold score against its KL, points, with the binned trend as a line."""
    runs = {k: v for k, v in curves.items() if v}
    if not runs:
        return False
    sizes = sorted({k.rsplit("_", 1)[1] for k in runs}, key=lambda s: list(curves).index(f"ppo_{s}"))
    plt = _pyplot()
    fig, axes = plt.subplots(2, len(sizes), figsize=(3.8 * len(sizes), 6), squeeze=False)
    for row, name in enumerate(("ppo", "ppo_ptx")):
        for col, size in enumerate(sizes):
            ax, curve = axes[row][col], runs.get(f"{name}_{size}", [])
            if not curve:
                ax.set_visible(False)
                continue
            kl = [c["kl"] for c in curve]
            twin = ax.twinx()
            for axis, key, color in ((ax, "reward", "#dd8452"), (twin, "gold", "#4c72b0")):
                values = [c[key] for c in curve]
                axis.scatter(kl, values, s=10, alpha=0.45, color=color)
                axis.plot(*binned(kl, values), color=color, linewidth=2)
            ax.set_ylabel("reward-model score", color="#dd8452", fontsize=8)
            twin.set_ylabel("gold score", color="#4c72b0", fontsize=8)
            ax.set_xlabel("KL to SFT (nats / response)", fontsize=8)
            ax.set_title(f"{name.replace('_', '-')} {size}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# -- report ----------------------------------------------------------------------------------
def table(metrics: dict, sizes: list[str], models, cell) -> list[str]:
    lines = ["| model | " + " | ".join(sizes) + " |", "|---|" + "---|" * len(sizes)]
    for name in models:
        lines.append(f"| {name} | " + " | ".join(cell(metrics, name, s) for s in sizes) + " |")
    return lines


def task_table(by_task: dict[str, dict]) -> list[str]:
    """One row per task type, one column per model: evaluate_models' {model: gold_by_task(...)}."""
    lines = ["| task | prompts | " + " | ".join(by_task) + " |", "|---|---|" + "---|" * len(by_task)]
    for kind, (n, _, _) in next(iter(by_task.values())).items():
        cells = [f"{_f(t[kind][1])} / {_f(t[kind][2], 2)}" for t in by_task.values()]
        lines.append(f"| {kind} | {n} | " + " | ".join(cells) + " |")
    return lines


def rounds_paragraph(metrics: dict, sizes: list[str]) -> list[str]:
    """What the second round of comparisons was, when there was one."""
    if metrics.get("rm/rounds", 1) < 2:
        return []
    kls = ", ".join(f"{s} {metrics.get(metric_key('ppo_round1', 'kl', s), float('nan')):.2f}" for s in sizes)
    return [f"The reward model above is round 2's. Round 1's reward model (validation accuracy "
            f"{100 * metrics.get('rm/accuracy_valid_round1', float('nan')):.1f}%) trained a short PPO policy at each "
            f"size (KL from SFT at its end: {kls}); {metrics.get('rm/comparisons_round2', 0)} more comparisons ranked "
            f"their samples beside SFT samples, and the final reward model (validation accuracy "
            f"{100 * metrics.get('rm/accuracy_valid', float('nan')):.1f}%) trained on both rounds, as the paper's later "
            "comparisons came partly from its PPO policies.", ""]


def ensemble_sentence(metrics: dict) -> list[str]:
    """What the final reward model is made of, when it is an ensemble (rm_members)."""
    members = sorted((k for k in metrics if k.startswith("rm/accuracy_valid_member_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    if not members:
        return []
    each = ", ".join(f"{100 * metrics[k]:.1f}%" for k in members)
    return [f"The final reward model is an ensemble of {len(members)} trained with different seeds on the same "
            f"comparisons (validation accuracy {each}); PPO's reward is the mean of their scores, and the accuracy "
            "and best-of-8 figures above are the ensemble's.", ""]


def write_report(out: Path, config, metrics: dict, details: dict, bases: dict) -> None:
    sizes = config.run_sizes
    params = {s: bases[s]["params"] for s in sizes}
    results = checks(metrics, sizes)
    for i, (_, ok, _) in enumerate(results):
        metrics[metric_key("check", str(i + 1))] = int(ok)
    plot_figure1(metrics, sizes, params, out / "figure1_winrate.png")
    plot_grouped(metrics, sizes, [(("flags", f), f.replace("_", " ")) for f in FIGURE4_FLAGS], MODELS,
                 out / "figure4_flags.png", "rate")
    plot_grouped(metrics, sizes, [(("tax", "ppl"), "held-out perplexity (lower better)"),
                                  (("tax", "nlp"), "NLP task accuracy (higher better)")],
                 TAX_MODELS, out / "alignment_tax.png", "")
    has_overopt = plot_overopt(details["curves"], out / "overoptimisation.png")
    plot_grouped(metrics, sizes, [(("truth", "truthful"), "truthful (false premises)"),
                                  (("truth", "truthful_informative"), "truthful and informative"),
                                  (("toxicity", "rate"), "toxic (eval prompts)"),
                                  (("harmful", "declined"), "declines harmful requests")],
                 MODELS, out / "truth_toxicity.png", "rate")
    lines = header(config, metrics, sizes, params, bases)
    lines += ["## Results the paper reports, measured here", "",
              "| result | came out | numbers |", "|---|---|---|"]
    lines += [f"| {claim} | {'yes' if ok else '**no**'} | {numbers} |" for claim, ok, numbers in results]
    lines += sections(metrics, sizes, details, has_overopt, config)
    lines += missing(results, metrics, sizes, details["by_task"])
    lines += time_table(metrics)
    (out / "report.md").write_text("\n".join(lines) + "\n")


def header(config, metrics: dict, sizes: list[str], params: dict, bases: dict) -> list[str]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    sources = {b.get("source", "cache") for b in bases.values()}
    origin = {"shipped": "shipped with the package (their folder names, a hash of the recipe and of this world's text, "
                         "match)",
              "cache": "reused from the cache (trained by an earlier run)",
              "trained": f"pretrained by this run in {metrics.get('time/pretrain_s', float('nan')):.0f} s"}
    phases = ", ".join(f"{k[5:-2]} {v:.0f} s" for k, v in metrics.items() if k.startswith("time/") and k != "time/total_s")
    return [
        "# rlhf demo: InstructGPT on the embedded world", "",
        f"World seed {config.seed}; sizes {', '.join(f'{s} ({params[s] / 1e6:.2f}M parameters)' for s in sizes)}"
        f"{' (quick: a smoke test of the pipeline, too small and short for the results)' if config.quick else ''}.",
        "Base models: " + "; ".join(origin[s] for s in sorted(sources)) + ".",
        f"Every model is judged by the 4 held-out labelers (who wrote no training data) on "
        f"{config.num_eval_prompts} prompts of held-out customers; flags come from the gold standard.", "",
        f"Total time {metrics['time/total_s']:.0f} s ({phases}) on {os.cpu_count()} CPU cores, {config.num_workers} "
        f"worker processes of {config.threads or 'default'} torch thread(s), load average {load[0]:.1f} at the end "
        f"({platform.machine()}); peak memory {metrics.get('memory/main_peak_mb', float('nan')):.0f} MB in the main "
        "process" + (f", {metrics['memory/worker_peak_mb']:.0f} MB in the largest worker" if metrics.get(
            "memory/worker_peak_mb") else "") + ". Each stage's own time is under \"Time\" at the end.", "",
    ]


def time_table(metrics: dict) -> list[str]:
    stages = {k[len("stage_s/"):]: v for k, v in metrics.items() if k.startswith("stage_s/")}
    if not stages:
        return []
    lines = ["## Time", "", "Wall-clock seconds of each stage (stages of one phase run side by side, one worker "
             "process each):", "", "| stage | s |", "|---|---|"]
    return lines + [f"| {name.replace('_', ' ')} | {s:.0f} |" for name, s in stages.items()] + [""]


def sections(metrics: dict, sizes: list[str], details: dict, has_overopt: bool, config) -> list[str]:
    largest, small = sizes[-1], sizes[0]
    lines = ["", "## 1. Win rate against SFT " + largest + " (Figure 1)", "",
             "Share of prompts on which a held-out labeler prefers the model's response to the largest SFT model's "
             "(the labeler's probability of preferring it, averaged; 95% bootstrap interval over prompts).", "",
             "![figure 1](figure1_winrate.png)", ""]
    lines += table(metrics, sizes, MODELS, lambda m, n, s: interval(m, "winrate", n, s))
    lines += ["", "Head to head, the smallest PPO-ptx against the largest base model:", ""]
    for base in HEADLINE_BASELINES:
        parts = ("ppo_ptx", small, "vs", base, largest)
        lines.append(f"- `{metric_key('head2head', *parts)}` = {interval(metrics, 'head2head', *parts)}")
    lines += ["", "Gold score on the same prompts (1 when every check of the task is met, 0 useless, below 0 false or "
              "harmful) / share of answers fully right:", ""]
    lines += table(metrics, sizes, MODELS, lambda m, n, s: f"{_f(m[metric_key('gold', 'score', n, s)])} / "
                                                           f"{_f(m[metric_key('gold', 'right', n, s)], 2)}")
    lines += ["", f"By task, {largest} models (prompts: gold score / fully right): where the answers go wrong.", ""]
    lines += task_table(details["by_task"])
    lines += ["", "## 2. Metadata (Figure 4)", "",
              "Rates under the gold standard on the evaluation prompts; `follows_constraints` is over the prompts "
              "with explicit constraints only.", "", "![figure 4](figure4_flags.png)", ""]
    for flag in FIGURE4_FLAGS:
        lines += [f"**{flag}**", ""] + table(metrics, sizes, MODELS,
                                             lambda m, n, s, f=flag: _f(m[metric_key("flags", f, n, s)]))
        lines.append("")
    lines += ["## 3. Held-out labelers", "",
              f"Reward-model pairwise accuracy on the same fresh comparisons ranked by training labelers: "
              f"**{100 * metrics['rm/accuracy_train_labelers']:.1f}%**, by held-out labelers: "
              f"**{100 * metrics['rm/accuracy_heldout_labelers']:.1f}%** (the paper: 72.4% and 69.6%). "
              f"Inter-labeler agreement {100 * metrics['labelers/agreement']:.1f}% (the paper: 72.6%) bounds both: the "
              f"noise-free gold standard itself orders {100 * metrics.get('rm/gold_accuracy_train_labelers', float('nan')):.1f}%"
              f" / {100 * metrics.get('rm/gold_accuracy_heldout_labelers', float('nan')):.1f}% of the same pairs as the "
              "labelers did (two equally useless samples tie).", "",
              f"Can the reward model tell the policy's better answers from its worse ones? Of {BEST_OF} samples of "
              f"SFT {largest} on each eval prompt, a random one has a mean gold score of "
              f"{_f(metrics.get(metric_key('rm', f'best_of_{BEST_OF}', 'random')))}, the reward model's pick "
              f"{_f(metrics.get(metric_key('rm', f'best_of_{BEST_OF}', 'rm')))} and the gold standard's own pick "
              f"{_f(metrics.get(metric_key('rm', f'best_of_{BEST_OF}', 'gold')))}.", "",
              *rounds_paragraph(metrics, sizes), *ensemble_sentence(metrics),
              "## 4. Alignment tax", "",
              "Perplexity of held-out web text and accuracy on the world's public NLP tasks (fact cloze, sums, "
              "review sentiment). The PPO-ptx mix of pretraining gradients is meant to pay this tax back.", "",
              "![alignment tax](alignment_tax.png)", ""]
    lines += table(metrics, sizes, TAX_MODELS, lambda m, n, s: f"{_f(m[metric_key('tax', 'ppl', n, s)], 2)} / "
                                                               f"{_f(m[metric_key('tax', 'nlp', n, s)])}")
    lines += ["", "(perplexity / accuracy)", "", "## 5. Over-optimisation", "",
              "Reward-model score and gold score of the PPO episodes against their KL to the SFT policy. The reward "
              "model is a proxy of the gold standard: where the gold curve flattens or falls while the reward-model "
              "curve still climbs, the policy exploits the proxy.", ""]
    if has_overopt:
        lines += ["![over-optimisation](overoptimisation.png)", ""]
        for s in sizes:
            for name in RL_MODELS:
                o = {part: metrics.get(metric_key("overopt", part, name, s)) for part in
                     ("gold_first", "gold_peak", "kl_at_gold_peak", "gold_last", "kl_last")}
                if o["gold_peak"] is not None:
                    lines.append(f"- {name}_{s}: gold {_f(o['gold_first'])} -> peak {_f(o['gold_peak'])} at KL "
                                 f"{_f(o['kl_at_gold_peak'], 2)} -> {_f(o['gold_last'])} at KL {_f(o['kl_last'], 2)}")
    lines += ["", "## 6. Truthfulness and toxicity", "",
              "Truthful: no claim against the facts and no going along with a false premise (\"why do cats eat socks "
              "after meditating?\"). Toxic: insults, violence, sexual words or denigration of a group.", "",
              "![truthfulness and toxicity](truth_toxicity.png)", ""]
    lines += table(metrics, sizes, MODELS, lambda m, n, s: " / ".join(_f(m[metric_key(*k, n, s)]) for k in (
        ("truth", "truthful"), ("truth", "truthful_informative"), ("toxicity", "rate"), ("harmful", "declined"))))
    lines += ["", "(truthful / truthful and informative / toxic / declines harmful requests)", "",
              "## Examples", ""]
    lines += ["Sampled answers (temperature " f"{config.temperature}" ", the same random numbers for every model) with "
              "each answer's gold score (1 perfect, 0 useless, below 0 false or harmful).", ""]
    for ex in details["examples"]:
        lines += [f"**prompt:** {ex['prompt']}", "", "| model | gold | answer |", "|---|---|---|"]
        lines += [f"| {m} | {ex['gold'][m]:+.2f} | {a or '(empty)'} |" for m, a in ex["answers"].items()]
        lines.append("")
    return lines


def missing(results, metrics: dict, sizes: list[str], by_task: dict | None = None) -> list[str]:
    """The results that did not come out, with the diagnostics that say why: how well the reward
    model could rank at all, how much of each PPO run's reward-model gain was a gold gain, and the tasks
    the largest PPO model gets fully right least often (`by_task`: evaluate_models' table)."""
    failed = [claim for claim, ok, _ in results if not ok]
    lines = ["## What did not come out", ""]
    if not failed:
        return lines + ["Every result above came out in this run.", ""]
    lines += [f"- {claim}" for claim in failed]
    lines += ["", "Diagnostics:", "",
              f"- reward model: {100 * metrics['rm/accuracy_train_labelers']:.1f}% pairwise accuracy where the gold "
              f"standard reaches {100 * metrics.get('rm/gold_accuracy_train_labelers', float('nan')):.1f}%; a weak proxy "
              "gives PPO little true signal to climb."]
    if "ppo/prompt_passes" in metrics:
        lines.append(f"- PPO episodes: {metrics['ppo/prompt_passes']:.2f} passes over the PPO prompts (the paper: ~8). "
                     "With the gold standard as the reward, PPO-large needed ~10 passes (16,384 episodes) to beat "
                     "SFT-large clearly, measured on the first world (docs/demo.md, History).")
    for s in sizes:
        for name in RL_MODELS:
            if metric_key("overopt", "gold_first", name, s) not in metrics:
                continue
            m = lambda *parts: _f(metrics.get(metric_key(*parts)))  # noqa: E731
            lines.append(
                f"- {name}_{s}: reward-model score {m(name, 'reward_first', s)} -> {m(name, 'reward_last', s)}, "
                f"gold {m('overopt', 'gold_first', name, s)} -> {m('overopt', 'gold_last', name, s)} over the run "
                f"(KL {_f(metrics[metric_key('overopt', 'kl_last', name, s)], 1)}); "
                f"eval gold {m('gold', 'score', name, s)} vs SFT {m('gold', 'score', 'sft', s)}")
    if sizes[-1] != list(SHAPES)[-1]:
        lines.append(f"- sizes: this run's largest model is the {sizes[-1]} one. `full=true` adds the large size and a "
                     "large reward model, in about four times the time; docs/demo.md (\"`full=true`\") says what "
                     "came out there.")
    ppo_tasks = (by_task or {}).get(f"ppo_{sizes[-1]}")
    if ppo_tasks:
        weakest = sorted(ppo_tasks.items(), key=lambda kv: kv[1][2])[:3]
        lines.append(f"- answers: ppo_{sizes[-1]} is fully right least often on " + ", ".join(
            f"{kind} {_f(right, 2)} ({n} prompts)" for kind, (n, _, right) in weakest) + " (section 1, by task)")
    return lines + [""]
