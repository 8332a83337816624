"""Helpers for tests that run stages as a user would."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

from rlhf.core.streams import torch_threads

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"


def rlhf_cmd(*args: str, processes: int = 1) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "rlhf", *args]
    return [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", str(processes),
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0", "-m", "rlhf", *args]


def env() -> dict:
    e = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return e


def run_cli(*args: str, processes: int = 1, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(rlhf_cmd(*args, processes=processes), env=env(), capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"rlhf {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def max_weight_diff(a: Path, b: Path) -> float:
    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys()
    return max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa)


def interrupted_copy(run: Path, to: Path, checkpoints: int) -> Path:
    """A copy of a finished run as a kill after its first `checkpoints` checkpoints would have left it (no
    final/, no metrics.json, no later checkpoints): `--resume` on it must finish with the run's own results."""
    shutil.copytree(run, to)
    shutil.rmtree(to / "final")
    (to / "metrics.json").unlink()
    for later in sorted((to / "checkpoints").glob("step-*"))[checkpoints:]:
        shutil.rmtree(later)
    return to


def two_torch_threads():
    """Run the block with 2 intra-op threads (the side-by-side paths need them), then restore."""
    return torch_threads(2)


def count_side_by_side(monkeypatch, *modules) -> list[int]:
    """Patch core.streams.run_side_by_side (and the name in core.train and in each of `modules`, which import
    it) to record how many pieces each call ran; returns the list it appends to. PPO reaches it through
    core.streams.run_pieces."""
    from rlhf.core import streams
    from rlhf.core import train as core_train

    calls: list[int] = []
    real = streams.run_side_by_side

    def counted(*pieces):
        calls.append(len(pieces))
        return real(*pieces)

    for module in (streams, core_train, *modules):
        monkeypatch.setattr(module, "run_side_by_side", counted)
    return calls


def sft_args(model, **over) -> list[str]:
    """key=value arguments of an SFT run on the sample demonstrations; `over` are overrides (dotted keys as strings)."""
    base = {"model": str(model), "train_file": str(SAMPLE / "demonstrations_train.jsonl"),
            "eval_file": str(SAMPLE / "demonstrations_valid.jsonl"), "epochs": 2, "lr": 2e-3, "batch_size": 16,
            "micro_batch_size": 16, "max_length": 96, "logging_steps": 5, **over}
    return [f"{k}={v}" for k, v in base.items()]


def sft_config(model, **over):
    """An SFT config on the sample demonstrations; `over` are key=value overrides (dotted keys as strings)."""
    from rlhf.config import load_config
    from rlhf.sft.config import SFTConfig

    return load_config(SFTConfig, None, sft_args(model, **over))


def rm_config(model, **over):
    """A reward-model config on the sample comparisons; `over` are key=value overrides."""
    from rlhf.config import load_config
    from rlhf.rm.config import RMConfig

    base = {"model": str(model), "train_file": str(SAMPLE / "comparisons_train.jsonl"),
            "eval_file": str(SAMPLE / "comparisons_valid.jsonl"), "epochs": 3, "lr": 1e-3, "batch_size": 16,
            "micro_batch_size": 8, "max_length": 96, "logging_steps": 5,
            "norm_file": str(SAMPLE / "demonstrations_valid.jsonl"), **over}
    return load_config(RMConfig, None, [f"{k}={v}" for k, v in base.items()])


def request_log_rows(server) -> list[dict]:
    """Every row of a live `rlhf serve`'s request log, oldest first."""
    conn = sqlite3.connect(server.state.request_log.path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM requests ORDER BY rowid")]
    finally:
        conn.close()
