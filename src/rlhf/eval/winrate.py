"""Win rates with ties split, bootstrap intervals, judges, and model labels: pure helpers."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch

Judge = Callable[[object, str, str], float]  # judge(prompt, response_a, response_b) -> p(a better)


def outcomes(probs: list[float]) -> list[float]:
    """A judge's p(a better) per prompt -> a's result: 1 win, 0 loss, 0.5 tie (ties split, as
    labelers' ties count half to each side)."""
    return [1.0 if p > 0.5 else 0.0 if p < 0.5 else 0.5 for p in probs]


def bootstrap_interval(values: list[float], num_resamples: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean: resample the prompts with replacement."""
    x = torch.tensor(values, dtype=torch.float64)  # (N,)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(values), (num_resamples, len(values)), generator=g)  # (S, N)
    means = x[idx].mean(-1).sort().values  # (S,)
    alpha = (1 - level) / 2
    lo = means[int(math.floor(alpha * (num_resamples - 1)))]
    hi = means[int(math.ceil((1 - alpha) * (num_resamples - 1)))]
    return float(lo), float(hi)


def model_label(path: str) -> str:
    """runs/ppo/final -> ppo (the run folder's name); other paths -> their last part."""
    p = Path(str(path).rstrip("/"))
    return p.parent.name if p.name == "final" and p.parent.name else p.name


def model_labels(paths: list[str], given: list[str] | None = None) -> list[str]:
    """One distinct label per model; repeats get -2, -3, ..."""
    labels = list(given) if given else [model_label(p) for p in paths]
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label}-{seen[label]}")
    return out


def resolve_models(config) -> tuple[list[str], list[str], str]:
    """(paths, names, baseline name) of an EvalConfig: the models, then the baseline when it is not among them."""
    baseline = config.baseline or config.models[0]
    paths = list(config.models) + ([] if baseline in config.models else [baseline])
    given = list(config.labels) + ["baseline"] * (len(paths) - len(config.models)) if config.labels else None
    names = model_labels(paths, given)
    return paths, names, names[paths.index(baseline)]


class RewardModelJudge:
    """p(a better) = sigmoid(r(a) - r(b)) under a reward model (the Bradley-Terry reading of its scores)."""

    def __init__(self, reward_model, max_length: int = 1024, batch_size: int = 16):
        self.rm, self.max_length, self.batch_size = reward_model, max_length, batch_size

    def __call__(self, prompt, response_a: str, response_b: str) -> float:
        return self.compare_many([prompt], [response_a], [response_b])[0]

    def compare_many(self, prompts: list, a: list[str], b: list[str]) -> list[float]:
        ra = self.rm.score(prompts, a, batch_size=self.batch_size, max_length=self.max_length)
        rb = self.rm.score(prompts, b, batch_size=self.batch_size, max_length=self.max_length)
        # Identical responses get exactly 0.5 (a tie), not a float-noise win or loss.
        return [0.5 if x == y else 1 / (1 + math.exp(y - x)) for x, y in zip(ra, rb)]


def judge_all(judge: Judge, prompts: list, a: list[str], b: list[str]) -> list[float]:
    """p(a better) for every prompt, batched when the judge can."""
    if hasattr(judge, "compare_many"):
        return judge.compare_many(prompts, a, b)
    return [0.5 if x == y else float(judge(p, x, y)) for p, x, y in zip(prompts, a, b)]
