"""Runs survive SIGKILL (resume = uninterrupted) and scale out (2 processes = 1), for SFT and the RM."""

import signal
import subprocess
import time

import pytest

from tests.helpers import SAMPLE, env, max_weight_diff, rlhf_cmd, run_cli

pytestmark = pytest.mark.slow

STAGES = {
    "sft": ["train_file=" + str(SAMPLE / "demonstrations_train.jsonl"), "max_length=96", "lr=2e-3",
            "batch_size=16", "micro_batch_size=4", "epochs=2", "logging_steps=1"],
    "rm": ["train_file=" + str(SAMPLE / "comparisons_train.jsonl"), "max_length=96", "lr=1e-3",
           "batch_size=16", "micro_batch_size=4", "epochs=2", "norm_max_records=64", "logging_steps=1"],
}


def weights(stage, run):
    return run / "final" / "model.safetensors"


@pytest.mark.parametrize("stage", ["sft", "rm"])
def test_sigkill_then_resume_equals_uninterrupted(stage, tiny_gpt2, tmp_path):
    args = [f"model={tiny_gpt2}", *STAGES[stage], "save_steps=3"]
    run_cli(stage, "--out", str(tmp_path / "whole"), *args)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(rlhf_cmd(stage, "--out", str(killed), *args), env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list((killed / "checkpoints").glob("step-000006")) and time.time() < deadline:
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "metrics.json").exists()

    run_cli(stage, "--out", str(killed), "--resume", *args)
    assert max_weight_diff(weights(stage, tmp_path / "whole"), weights(stage, killed)) == 0.0


@pytest.mark.parametrize("stage", ["sft", "rm"])
def test_two_processes_equal_one_with_the_same_global_batch(stage, tiny_gpt2, tmp_path):
    args = [f"model={tiny_gpt2}", *STAGES[stage], "epochs=1"]
    run_cli(stage, "--out", str(tmp_path / "one"), *args)
    run_cli(stage, "--out", str(tmp_path / "two"), *args, processes=2)
    # The same losses at every logged step (only float summation order differs) ...
    assert losses(tmp_path / "one") == pytest.approx(losses(tmp_path / "two"), rel=1e-5)
    # ... and the same weights, up to Adam amplifying that reordering noise on near-zero gradients.
    assert max_weight_diff(weights(stage, tmp_path / "one"), weights(stage, tmp_path / "two")) < 1e-3


def losses(run):
    import json

    return [json.loads(l)["train/loss"] for l in (run / "log.jsonl").read_text().splitlines() if "train/loss" in l]
