"""PPO throughput on a fixed tiny setup, and where the time goes.

Tiny GPT-2 (4 layers, width 256, 4 heads, vocab 2048) for all four models (policy,
reference, value, reward), 16 prompts a batch, 32-token responses, 4 PPO epochs, one
mini-batch per epoch (TRL's default). Reports PPO episodes/s, generated tokens/s inside
PPO, the split of each iteration between generation, scoring and training, and plain
`model.generate` (KV cache) tokens/s on the same batch for comparison.

    python benchmarks/ppo_bench.py [--iterations 6] [--epochs 4] [--precision fp32] [--json out.json] [--set k=v ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import torch


def build_setup(root: Path, prompts_file: str) -> dict:
    """Policy and reward model folders of the fixed shape, and a 16-prompt file."""
    from transformers import AutoModelForCausalLM

    from rlhf.core.reward import reward_model_from_lm
    from rlhf.core.tiny import build_tokenizer, model_config

    tok = build_tokenizer(root / "policy")
    config = model_config("gpt2", vocab_size=2048, n_layer=4, d_model=256, n_head=4,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(root / "policy")
    reward_model_from_lm(str(root / "policy"), seed=0).save(root / "rm")
    lines = Path(prompts_file).read_text().splitlines()[:16]
    (root / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    return {"policy": str(root / "policy"), "reward_model": str(root / "rm"), "prompts_file": str(root / "prompts.jsonl")}


def ppo_run(setup: dict, out: Path, iterations: int, epochs: int, precision: str, extra: list[str] = ()) -> dict:
    from rlhf.config import load_config
    from rlhf.ppo.config import PPOConfig
    from rlhf.ppo.train import main

    def run(n: int, where: Path) -> float:
        overrides = {**setup, "total_episodes": 16 * n, "batch_size": 16, "mini_batch_size": 16,
                     "micro_batch_size": 16, "ppo_epochs": epochs, "max_new_tokens": 32, "max_length": 128,
                     "lr": 1e-5, "save_steps": 0, "precision": precision, "log_samples": 0}
        start = time.process_time()
        main(load_config(PPOConfig, None, [f"{k}={v}" for k, v in overrides.items()] + list(extra)), str(where))
        return time.process_time() - start

    # CPU seconds of the extra iterations (a run of n+1 minus a run of 1): on a shared machine this
    # moves much less with other people's load than wall-clock time does.
    cpu_per_iteration = (run(iterations + 1, out) - run(1, out.with_name("warmup"))) / iterations
    rows = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()][1:]  # first iteration warms up
    mean = lambda key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
    total = mean("time/generation_s") + mean("time/scoring_s") + mean("time/training_s")
    return {
        "ppo/episodes_per_s": 16 / total,
        "ppo/gen_tokens_per_s": mean("ppo/gen_tokens_per_s"),
        "ppo/seconds_per_iteration": total,
        "ppo/response_length": mean("ppo/response_length"),
        "ppo/padding_frac": mean("ppo/padding_frac"),
        "split/generation": mean("time/generation_s") / total,
        "split/scoring": mean("time/scoring_s") / total,
        "split/training": mean("time/training_s") / total,
        "ppo/episodes_per_cpu_s": 16 / cpu_per_iteration,
    }


@torch.no_grad()
def generate_baselines(setup: dict, repeats: int, precision: str) -> dict:
    """Tokens/s of plain HF generate (KV cache) and of PPO's sampler on the same 16 prompts."""
    from transformers import GenerationConfig

    from rlhf.core.generate import episode_noise, sample
    from rlhf.core.models import load_causal_lm, load_tokenizer
    from rlhf.core.ops import pad_rows
    from rlhf.core.tokens import encode_prompt
    from rlhf.data import read_records

    tok = load_tokenizer(setup["policy"])
    model = load_causal_lm(setup["policy"]).eval()
    prompts = [encode_prompt(tok, r["prompt"]) for r in read_records(setup["prompts_file"], "prompt")]
    ids, mask = pad_rows(prompts, tok.pad_token_id, left=True)
    gen = GenerationConfig(max_new_tokens=32, min_new_tokens=32, do_sample=True, top_k=0, top_p=1.0, temperature=1.0,
                           pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, use_cache=True)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    out = {}
    for name, fn in {
        "generate/hf_tokens_per_s": lambda: model.generate(input_ids=ids, attention_mask=mask, generation_config=gen),
        "generate/ppo_sampler_tokens_per_s": lambda: sample(model, prompts, episode_noise(0, list(range(16)), 32),
                                                            1.0, 1.0, -1, tok.pad_token_id),  # eos -1: always 32 tokens
    }.items():
        with autocast:
            fn()  # warm-up
            start, cpu = time.perf_counter(), time.process_time()
            for _ in range(repeats):
                fn()
        out[name] = 16 * 32 * repeats / (time.perf_counter() - start)
        out[name.replace("_per_s", "_per_cpu_s")] = 16 * 32 * repeats / (time.process_time() - cpu)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--prompts", default="data/sample/prompts.jsonl")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra PPO config overrides, e.g. side_by_side=false")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        setup = build_setup(Path(tmp), args.prompts)
        results = {"threads": torch.get_num_threads(), "precision": args.precision, "ppo_epochs": args.epochs}
        results["overrides"] = " ".join(args.set)
        results.update(ppo_run(setup, Path(tmp) / "run", args.iterations, args.epochs, args.precision, args.set))
        results.update(generate_baselines(setup, args.repeats, args.precision))
    results["generate/sampler_vs_hf_cpu"] = (results["generate/ppo_sampler_tokens_per_cpu_s"]
                                             / results["generate/hf_tokens_per_cpu_s"])
    width = max(map(len, results))
    for key, value in results.items():
        print(f"{key:<{width}}  {value:.4g}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
