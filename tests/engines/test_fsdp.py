"""FSDP on CPU: `accelerate launch --use_fsdp` shards the model with torch's fully_shard over gloo
(core/fsdp.py), trains as one process does, and checkpoints and resumes (SFT and the RM; PPO in
test_fsdp_ppo.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rlhf.core.models import load_tokenizer
from rlhf.core.tokens import CHAT_TEMPLATES
from tests.helpers import env, interrupted_copy, max_weight_diff, run_cli
from tests.test_reliability import STAGES

pytestmark = pytest.mark.slow


def fsdp_cli(*args: str) -> subprocess.CompletedProcess:
    """The form a user tries first (docs/engines.md), on two CPU processes."""
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--use_fsdp", "--num_processes", "2",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0", "-m", "rlhf", *args]
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def losses(run: Path) -> list[float]:
    return [json.loads(l)["train/loss"] for l in (run / "log.jsonl").read_text().splitlines() if "train/loss" in l]


@pytest.mark.timeout(1200)  # three runs, two of them two-process launches
@pytest.mark.parametrize("stage", ["sft", "rm"])
def test_fsdp_on_two_cpu_processes_equals_one_and_resumes(stage, tiny_gpt2, tmp_path):
    args = [f"model={tiny_gpt2}", *STAGES[stage], "epochs=1", "max_steps=9", "save_steps=3",
            "keep_checkpoints=10", "chat_template=plain"]
    run_cli(stage, "--out", str(tmp_path / "one"), *args)
    whole = fsdp_cli(stage, "--out", str(tmp_path / "fsdp"), *args)
    # Sharded by rlhf, not silently run as DDP (what accelerate's own FSDP2 plugin does on a CPU).
    assert "sharded over 2 processes" in whole.stderr
    assert losses(tmp_path / "one") == pytest.approx(losses(tmp_path / "fsdp"), rel=1e-5)
    final = "final/model.safetensors"
    assert max_weight_diff(tmp_path / "one" / final, tmp_path / "fsdp" / final) < 1e-3  # bound of the DDP test
    # final/ keeps the chat template trained with, also when written from the gathered copy of the weights
    assert load_tokenizer(str(tmp_path / "fsdp" / "final")).chat_template == CHAT_TEMPLATES["plain"]

    # Resume from the second checkpoint: gathered weights and optimizer state scatter back exactly.
    resumed = interrupted_copy(tmp_path / "fsdp", tmp_path / "resumed", checkpoints=2)
    fsdp_cli(stage, "--out", str(resumed), "--resume", *args)
    assert max_weight_diff(tmp_path / "fsdp" / final, resumed / final) == 0.0
    assert losses(resumed) == losses(tmp_path / "fsdp")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="on a GPU accelerate starts DeepSpeed")
def test_deepspeed_on_cpu_is_refused_instead_of_running_as_ddp(monkeypatch):
    from rlhf.core.train import make_accelerator
    from rlhf.sft.config import SFTConfig

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(ValueError, match="needs CUDA GPUs here.*silently run plain DDP.*--use_fsdp"):
        make_accelerator(SFTConfig(model="m", train_file="t.jsonl"))
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "false")
    assert make_accelerator(SFTConfig(model="m", train_file="t.jsonl")).num_processes == 1  # accepted otherwise
