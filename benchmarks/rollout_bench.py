"""Rollout throughput: new tokens/s of our KV-cache sampler against vLLM (generation_backend=vllm).

    .venv-vllm/bin/python benchmarks/rollout_bench.py [--models tiny llama100m] [--prompts 64] [--new-tokens 128]

Models, random weights, built offline:
- tiny: the benchmark GPT-2 of sft_rm_bench.py (4 layers, width 256, 4 heads, vocab 2048);
- llama100m: a Llama of 106M parameters (12 layers, width 768, 12 heads, 6 KV heads, vocab 2048).
Each backend samples the same 64 prompts of 32 tokens, 128 new tokens each at temperature 1 (the
PPO setting: the whole batch in one call), after one warm-up call. New tokens are counted from the
response masks (a random model rarely draws EOS). vLLM's engine start is reported on its own: a
PPO run pays it once, not per rollout. Without vLLM only our sampler runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

SHAPES = {"tiny": ("gpt2", dict(n_layer=4, d_model=256, n_head=4)),
          "llama100m": ("llama", dict(n_layer=12, d_model=768, n_head=12))}


def build(name: str, root: Path) -> Path:
    from rlhf.core.tiny import build_tiny_model
    from sft_rm_bench import make_model

    if name == "tiny":
        return make_model(root / name)
    arch, shape = SHAPES[name]
    return build_tiny_model(root / name, arch=arch, vocab_size=2048, max_len=512, **shape)


def prompts_for(model_dir: Path, n: int, length: int) -> list[list[int]]:
    import torch

    # The tokenizer trained for a built model can hold fewer tokens than asked for (build_tiny_model's
    # vocab_size is a cap): draw ids the model has, or its embedding lookup fails.
    vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    g = torch.Generator().manual_seed(0)
    return torch.randint(10, vocab, (n, length), generator=g).tolist()


def run_native(model_dir: Path, prompts, new_tokens: int, dtype: str) -> dict:
    import torch

    from rlhf.core.generate import episode_noise, sample
    from rlhf.core.models import load_causal_lm, load_tokenizer

    tok, model = load_tokenizer(str(model_dir)), load_causal_lm(str(model_dir), dtype=dtype).eval()
    noise = episode_noise(0, list(range(len(prompts))), new_tokens)
    sample(model, prompts[:4], noise[:4, :8], 1.0, 1.0, tok.eos_token_id, tok.pad_token_id)  # warm-up
    t0 = time.perf_counter()
    out = sample(model, prompts, noise, 1.0, 1.0, tok.eos_token_id, tok.pad_token_id)
    seconds = time.perf_counter() - t0
    n = int(out[3].sum())
    del model
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return {"new_tokens": n, "seconds": round(seconds, 2), "tokens_per_s": round(n / seconds, 1)}


def run_vllm(model_dir: Path, prompts, new_tokens: int, dtype: str) -> dict:
    from rlhf.core.generate import VLLMConfig
    from rlhf.core.models import load_tokenizer
    from rlhf.core.vllm_engine import VLLMSampler

    tok = load_tokenizer(str(model_dir))
    t0 = time.perf_counter()
    sampler = VLLMSampler(str(model_dir), VLLMConfig(dtype=dtype, kv_cache_gb=1.0), max_model_len=512)
    start = time.perf_counter() - t0
    sampler.sample(prompts[:4], [0, 1, 2, 3], 8, 1.0, 1.0, tok.eos_token_id, tok.pad_token_id)  # warm-up
    t0 = time.perf_counter()
    out = sampler.sample(prompts, list(range(len(prompts))), new_tokens, 1.0, 1.0, tok.eos_token_id, tok.pad_token_id)
    seconds = time.perf_counter() - t0
    sampler.close()
    n = int(out[3].sum())
    return {"new_tokens": n, "seconds": round(seconds, 2), "tokens_per_s": round(n / seconds, 1),
            "engine_start_s": round(start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    have_vllm = importlib.util.find_spec("vllm") is not None
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            model_dir = build(name, Path(tmp))
            prompts = prompts_for(model_dir, args.prompts, args.prompt_tokens)
            results[name] = {"native": run_native(model_dir, prompts, args.new_tokens, args.dtype)}
            if have_vllm:
                results[name]["vllm"] = run_vllm(model_dir, prompts, args.new_tokens, args.dtype)
            print(json.dumps({name: results[name]}), flush=True)
    print(json.dumps({"config": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
