"""For a machine with CUDA GPUs: bf16 training on CUDA, FSDP over NCCL and vLLM on a GPU, the paths
the CPU tests stand in for. Skipped without CUDA; run them with `python -m pytest -q -m gpu`
(docs/engines.md)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import SAMPLE, max_weight_diff, sft_config

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
SFT_ARGS = ["train_file=" + str(SAMPLE / "demonstrations_train.jsonl"), "max_length=96", "lr=2e-3",
            "batch_size=16", "micro_batch_size=4", "epochs=1", "logging_steps=1"]


def test_bf16_sft_on_cuda_lowers_the_loss(tiny_gpt2, tmp_path):
    from rlhf.sft.train import main

    main(sft_config(tiny_gpt2, precision="bf16", eval_file="", epochs=1), str(tmp_path / "run"))
    history = [json.loads(l) for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    loss = [h["train/loss"] for h in history if "train/loss" in h]
    assert loss[-1] < loss[0] - 0.5, loss


def launch(*args: str, fsdp: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ACCELERATE_USE_CPU"}
    mode = ["--use_fsdp"] if fsdp else []
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", *mode, "--num_processes", "2" if fsdp else "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0", "-m", "rlhf", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="FSDP over NCCL needs 2 GPUs")
def test_fsdp_over_nccl_equals_one_gpu(tiny_gpt2, tmp_path):
    launch("sft", "--out", str(tmp_path / "one"), f"model={tiny_gpt2}", *SFT_ARGS, fsdp=False)
    launch("sft", "--out", str(tmp_path / "fsdp"), f"model={tiny_gpt2}", *SFT_ARGS, fsdp=True)
    final = "final/model.safetensors"
    assert max_weight_diff(tmp_path / "one" / final, tmp_path / "fsdp" / final) < 1e-3


@pytest.mark.vllm
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM")
def test_vllm_on_gpu_greedy_equals_our_sampler(tiny_model_factory):
    from rlhf.core.generate import sample
    from rlhf.core.models import load_causal_lm, load_tokenizer
    from rlhf.core.vllm_engine import VLLMConfig, VLLMSampler

    path = str(tiny_model_factory("llama", d_model=128, n_head=2))  # head size 64: every vLLM backend takes it
    tok, model = load_tokenizer(path), load_causal_lm(path).cuda().eval()
    sampler = VLLMSampler(path, VLLMConfig(dtype="float32", gpu_memory_utilization=0.2), max_model_len=256)
    prompts = [tok(t)["input_ids"] for t in ["hello world", "the quick brown fox", "list five ideas", "a"]]
    theirs = sampler.sample(prompts, [0, 1, 2, 3], 16, 0.0, 1.0, tok.eos_token_id, tok.pad_token_id, "cuda")
    ours = sample(model, prompts, torch.zeros(4, 16), 0.0, 1.0, tok.eos_token_id, tok.pad_token_id)
    assert torch.equal(ours[2], theirs[2])
    sampler.close()


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="needs deepspeed")
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="ZeRO over NCCL needs 2 GPUs")
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_through_accelerate_trains_sft(stage, tiny_gpt2, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "ACCELERATE_USE_CPU"}
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--use_deepspeed", "--zero_stage", str(stage),
           "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", "0", "-m", "rlhf", "sft",
           "--out", str(tmp_path / "run"), f"model={tiny_gpt2}", *SFT_ARGS]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    loss = [json.loads(l)["train/loss"] for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
            if "train/loss" in l]
    assert loss[-1] < loss[0] - 0.5, loss
    assert (tmp_path / "run" / "final" / "model.safetensors").exists()
