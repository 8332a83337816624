"""Run bookkeeping: the --out folder, resolved config, metrics, TensorBoard, progress.

Everything a run produces goes under --out:
  config.yaml      the resolved config (checked against on --resume)
  metrics.json     final metrics, flat `section/name` keys
  log.jsonl        every logged step, one JSON object a line (for plots and eval)
  logs/            TensorBoard event files
  checkpoints/     resumable checkpoints (see core/checkpoint.py)
  final/           the trained model, loadable by transformers / this package
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import yaml

from rlhf.config import ConfigError, to_dict
from rlhf.core.io import append_jsonl, atomic_write_json, atomic_write_jsonl, atomic_write_text

log = logging.getLogger("rlhf")

# Keys that may change between a run and its resume without changing the result.
_RESUME_FREE_KEYS = {"logging_steps", "save_steps", "keep_checkpoints"}


def setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:  # transformers prints a progress bar per weight load; runs have their own bars
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


class Run:
    """One training run's output folder. Only the main process writes files."""

    def __init__(self, out: str | Path, config: Any, is_main: bool = True, resume: bool = False):
        setup_logging()
        self.out = Path(out)
        self.is_main = is_main
        self.start = time.time()
        self._writer = None
        self.history: list[dict] = []
        resolved = to_dict(config)
        saved = self.out / "config.yaml"
        if resume:
            if not saved.exists():
                raise ConfigError(f"--resume: {self.out} holds no run (no config.yaml)")
            previous = yaml.safe_load(saved.read_text())
            changed = sorted(k for k in set(previous) | set(resolved)
                             if k not in _RESUME_FREE_KEYS and previous.get(k) != resolved.get(k))
            if changed:
                details = ", ".join(f"{k}: {previous.get(k)!r} -> {resolved.get(k)!r}" for k in changed)
                raise ConfigError(f"--resume: the config differs from the run's saved config.yaml ({details})")
        elif (self.out / "checkpoints").exists() and any((self.out / "checkpoints").glob("step-*")):
            raise ConfigError(f"{self.out} already holds a run with checkpoints: pass --resume to continue it, "
                              "or choose another --out")
        if is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(saved, yaml.safe_dump(resolved, sort_keys=False))
            if resume and (self.out / "log.jsonl").exists():
                self.history = [json.loads(l) for l in (self.out / "log.jsonl").read_text().splitlines() if l.strip()]

    @property
    def writer(self):
        if self._writer is None and self.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.out / "logs"))
        return self._writer

    def truncate_history(self, step: int) -> None:
        """On resume, forget logged steps after the checkpoint (they will be redone)."""
        self.history = [h for h in self.history if h.get("step", 0) <= step]
        if self.is_main:
            atomic_write_jsonl(self.out / "log.jsonl", self.history)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.is_main:
            return
        row = {"step": step, **{k: float(v) for k, v in metrics.items()}}
        self.history.append(row)
        append_jsonl(self.out / "log.jsonl", [row])
        for key, value in metrics.items():
            self.writer.add_scalar(key, float(value), step)
        self.writer.flush()

    def latest_metrics(self) -> dict[str, float]:
        """The last logged value of each metric: what a run's metrics.json starts from."""
        return {k: v for row in self.history for k, v in row.items() if k != "step"}

    def finish(self, metrics: dict[str, Any]) -> dict[str, Any]:
        metrics = {**metrics, "time/total_s": round(time.time() - self.start, 3)}
        if self.is_main:
            atomic_write_json(self.out / "metrics.json", metrics)
            if self._writer is not None:
                self._writer.close()
        return metrics


def progress(total: int, desc: str, disable: bool = False, initial: int = 0):
    from tqdm.auto import tqdm

    # TQDM_DISABLE=1 (tqdm's own switch) silences every bar, as the demo's worker processes do: an explicit
    # disable=False would otherwise override it.
    disable = disable or os.environ.get("TQDM_DISABLE", "") not in ("", "0")
    return tqdm(total=total, desc=desc, disable=disable, initial=initial, dynamic_ncols=True, smoothing=0.1)


def progress_iter(items, desc: str, min_items: int = 2000):
    """Iterate with a progress bar when there are enough items for it to matter."""
    from tqdm.auto import tqdm

    quiet = len(items) < min_items or os.environ.get("RANK", "0") != "0"  # one bar, from the main process
    return tqdm(items, desc=desc, disable=quiet, dynamic_ncols=True, leave=False)
