"""PNG plots of an evaluation: win rates with intervals, and reward and KL over PPO steps."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and in tests
    import matplotlib.pyplot as plt

    return plt


def plot_winrates(names: list[str], rates: list[float], lows: list[float], highs: list[float], baseline: str,
                  path: Path, title: str = "win rate (95% bootstrap interval)") -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 3.5))
    errors = [[r - lo for r, lo in zip(rates, lows)], [hi - r for r, hi in zip(rates, highs)]]
    ax.bar(names, rates, yerr=errors, capsize=6, color="#4c72b0")
    ax.axhline(0.5, color="gray", linestyle="--", linewidth=1)
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"win rate vs {baseline}")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_flags(names: list[str], metrics: dict, panels, path: Path) -> bool:
    """The paper's Figure 4: one panel per metadata question, a bar per model with its 95% interval.
    `panels` are (title, flag, inverted); inverted panels show the share without the flag."""
    rows = [n for n in names if f"human/flag/{panels[0][1]}/{n}" in metrics]
    if not rows:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.5), sharey=True)
    for ax, (title, flag, inverted) in zip(axes, panels):
        value = [metrics[f"human/flag/{flag}/{n}"] for n in rows]
        low = [metrics[f"human/flag_low/{flag}/{n}"] for n in rows]
        high = [metrics[f"human/flag_high/{flag}/{n}"] for n in rows]
        if inverted:
            value, low, high = [1 - v for v in value], [1 - h for h in high], [1 - lo for lo in low]
        errors = [[v - lo for v, lo in zip(value, low)], [h - v for v, h in zip(value, high)]]
        ax.bar(rows, value, yerr=errors, capsize=5, color="#55a868")
        ax.set_title("\n".join(textwrap.wrap(title, 28)), fontsize=9)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("share of responses (95% interval)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def read_history(run_dir: Path) -> list[dict]:
    """The logged steps of a training run (its log.jsonl), or [] when it has none."""
    log = Path(run_dir) / "log.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def plot_training(histories: dict[str, list[dict]], path: Path) -> bool:
    """Reward and KL over PPO iterations for each run that logged them; False when none did."""
    runs = {name: [h for h in hist if "objective/scores" in h] for name, hist in histories.items()}
    runs = {name: rows for name, rows in runs.items() if rows}
    if not runs:
        return False
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    for name, rows in runs.items():
        steps = [r["step"] for r in rows]
        left.plot(steps, [r["objective/scores"] for r in rows], label=name)
        right.plot(steps, [r["objective/kl"] for r in rows], label=name)
    left.set_xlabel("PPO iteration"), left.set_ylabel("mean reward-model score")
    right.set_xlabel("PPO iteration"), right.set_ylabel("KL to SFT (nats per response)")
    left.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
