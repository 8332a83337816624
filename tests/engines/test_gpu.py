"""For a machine with CUDA GPUs: bf16 training on CUDA, PPO's 2 processes = 1 on two GPUs, the server's
greedy answers on CUDA, FSDP over NCCL and vLLM on a GPU: the paths the CPU tests stand in for. Skipped
without CUDA; run them with `python -m pytest -q -m gpu` (docs/engines.md).

Each training stage runs as its own command, as a user runs it: accelerate keeps one precision and one
device setup per process."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import SAMPLE, max_weight_diff, rlhf_cmd

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
SFT_ARGS = ["train_file=" + str(SAMPLE / "demonstrations_train.jsonl"), "max_length=96", "lr=2e-3",
            "batch_size=16", "micro_batch_size=4", "epochs=1", "logging_steps=1"]


def gpu_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "ACCELERATE_USE_CPU"}
    return {**env, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run_on_gpu(*args: str, processes: int = 1) -> None:
    proc = subprocess.run(rlhf_cmd(*args, processes=processes), env=gpu_env(), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]


def train_losses(run: Path) -> list[float]:
    return [json.loads(l)["train/loss"] for l in (run / "log.jsonl").read_text().splitlines() if "train/loss" in l]


def test_bf16_sft_on_cuda_lowers_the_loss_as_fp32_does(tiny_gpt2, tmp_path):
    for precision in ("fp32", "bf16"):
        run_on_gpu("sft", "--out", str(tmp_path / precision), f"model={tiny_gpt2}", *SFT_ARGS, f"precision={precision}")
    bf16, fp32 = train_losses(tmp_path / "bf16"), train_losses(tmp_path / "fp32")
    assert bf16[-1] < bf16[0] - 0.5, bf16
    # bf16 keeps 8 bits of mantissa: the loss follows fp32 closely, not exactly (5% on CPU too)
    assert bf16[-1] == pytest.approx(fp32[-1], rel=0.05), (bf16, fp32)
    assert (tmp_path / "bf16" / "final" / "model.safetensors").exists()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_ppo_two_processes_equal_one_on_cuda(ppo_world, tmp_path):
    args = {**ppo_world, "batch_size": 16, "mini_batch_size": 8, "micro_batch_size": 4, "max_new_tokens": 6,
            "ppo_epochs": 2, "lr": 5e-3, "min_lr_ratio": 1.0, "save_steps": 0, "total_episodes": 32, "ptx_coef": 0.5,
            "ptx_batch_size": 4}
    overrides = [f"{k}={v}" for k, v in args.items()]
    run_on_gpu("ppo", "--out", str(tmp_path / "one"), *overrides)
    run_on_gpu("ppo", "--out", str(tmp_path / "two"), *overrides, processes=2)
    # The CPU test holds 1e-4; GPU kernels may reduce in another order per shape. A lost micro-batch or
    # ptx chunk moves these weights by ~lr (5e-3).
    assert max_weight_diff(tmp_path / "one/final/model.safetensors", tmp_path / "two/final/model.safetensors") < 5e-4
    m1, m2 = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("one", "two"))
    for key in ("objective/scores", "objective/kl", "ppo/policy/loss", "ppo/ptx/loss"):
        assert m1[key] == pytest.approx(m2[key], rel=1e-3, abs=1e-5), key


def test_served_greedy_text_equals_the_sampler_on_cuda(tiny_gpt2):
    import openai

    from rlhf.core.generate import generate
    from rlhf.core.models import load_causal_lm, load_tokenizer
    from rlhf.serve.cli import build_state
    from tests.serve.conftest import ServerThread

    prompts = ["write a short story about a bear who goes to the beach", "hello world", "the quick brown fox"]
    tok = load_tokenizer(str(tiny_gpt2))
    model = load_causal_lm(str(tiny_gpt2)).to("cuda").eval()
    expected = [tok.decode(r, skip_special_tokens=True)
                for r in generate(model, tok, [tok(p)["input_ids"] for p in prompts], 12, do_sample=False)]
    with ServerThread(build_state(str(tiny_gpt2), model_name="tiny", log_prompts=None, device="cuda")) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)
        out = client.completions.create(model="tiny", prompt=prompts, max_tokens=12, temperature=0)
    assert [c.text for c in sorted(out.choices, key=lambda c: c.index)] == expected


def launch(*args: str, fsdp: bool) -> None:
    mode = ["--use_fsdp"] if fsdp else []
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", *mode, "--num_processes", "2" if fsdp else "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0", "-m", "rlhf", *args]
    proc = subprocess.run(cmd, env=gpu_env(), capture_output=True, text=True, timeout=900)
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
    from rlhf.core.generate import VLLMConfig, sample
    from rlhf.core.models import load_causal_lm, load_tokenizer
    from rlhf.core.vllm_engine import VLLMSampler

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
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--use_deepspeed", "--zero_stage", str(stage),
           "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", "0", "-m", "rlhf", "sft",
           "--out", str(tmp_path / "run"), f"model={tiny_gpt2}", *SFT_ARGS]
    proc = subprocess.run(cmd, env=gpu_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    loss = train_losses(tmp_path / "run")
    assert loss[-1] < loss[0] - 0.5, loss
    assert (tmp_path / "run" / "final" / "model.safetensors").exists()
