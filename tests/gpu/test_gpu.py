"""What only a GPU can check: bf16 SFT steps on CUDA, PPO's 2 processes = 1 on two GPUs, and the
server's greedy answer equal to the package's sampler on CUDA. Skipped without CUDA. On a GPU
machine, run just these with

    .venv/bin/python -m pytest -m gpu

Each training stage runs as its own command, as a user runs it (accelerate keeps one precision
and one device setup per process)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch

from tests.helpers import max_weight_diff, rlhf_cmd, sft_args

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def run_on_gpu(*args: str, processes: int = 1) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ACCELERATE_USE_CPU"}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(rlhf_cmd(*args, processes=processes), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_bf16_sft_steps_follow_fp32_on_the_gpu(tiny_gpt2, tmp_path):
    losses = {}
    for precision in ("fp32", "bf16"):
        run_on_gpu("sft", "--out", str(tmp_path / precision),
                   *sft_args(tiny_gpt2, epochs=1, eval_file="", precision=precision, max_steps=4))
        losses[precision] = json.loads((tmp_path / precision / "metrics.json").read_text())["train/loss"]
    # bf16 keeps 8 bits of mantissa: the loss follows fp32 closely, not exactly (5% on CPU too)
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05), losses
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
