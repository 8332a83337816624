"""TRL side of the PPO benchmark: TRL's RLOO trainer on the same tiny setup as
benchmarks/ppo_bench.py (same policy/reference/reward shapes, 16 episodes an update,
32-token responses, one optimisation pass), for the "faster than RLOO with one PPO
epoch" comparison. TRL's PPO trainer left TRL after 1.12, so 1.16 has only RLOO here.

    pip install trl==1.16.0   # the `bench` extra; check `pip install --dry-run` keeps torch
    python benchmarks/ppo_trl.py [--steps 5] [--precision fp32] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def rloo_run(setup: dict, steps: int, precision: str = "fp32") -> dict:
    import datasets
    from transformers import TrainerCallback
    from trl import RLOOConfig, RLOOTrainer

    from rlhf.core.models import load_tokenizer
    from rlhf.core.reward import load_reward_model
    from rlhf.data import read_records

    rm = load_reward_model(setup["reward_model"])

    def reward(prompts, completions, **_):
        return rm.score(list(prompts), list(completions), max_length=128)

    prompts = [r["prompt"] for r in read_records(setup["prompts_file"], "prompt")]
    prompts = [p if isinstance(p, str) else p[-1]["content"] for p in prompts]
    data = datasets.Dataset.from_list([{"prompt": p} for p in prompts * (steps + 2)])
    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *args, **kwargs):
            stamps.append((time.perf_counter(), time.process_time()))

    with tempfile.TemporaryDirectory() as out:
        config = RLOOConfig(
            output_dir=out, per_device_train_batch_size=16, num_generations=2, max_completion_length=32,
            num_iterations=1, steps_per_generation=1, beta=0.05, temperature=1.0, max_steps=steps, learning_rate=1e-5,
            logging_steps=1000, report_to=[], save_strategy="no", use_cpu=not torch.cuda.is_available(),
            disable_dropout=True, bf16=precision == "bf16")
        trainer = RLOOTrainer(model=setup["policy"], reward_funcs=reward, args=config, train_dataset=data,
                              processing_class=load_tokenizer(setup["policy"], padding_side="left"), callbacks=[Clock()])
        trainer.train()
    per_update = (stamps[-1][0] - stamps[0][0]) / (len(stamps) - 1)  # the first update warms up
    cpu_per_update = (stamps[-1][1] - stamps[0][1]) / (len(stamps) - 1)
    return {"trl_rloo/episodes_per_s": 16 / per_update, "trl_rloo/seconds_per_update": per_update,
            "trl_rloo/episodes_per_cpu_s": 16 / cpu_per_update}


def main() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from ppo_bench import build_setup

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--prompts", default="data/sample/prompts.jsonl")
    parser.add_argument("--json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        setup = build_setup(Path(tmp), args.prompts)
        results = {"threads": torch.get_num_threads(), "precision": args.precision,
                   **rloo_run(setup, args.steps, args.precision)}
    for key, value in results.items():
        print(f"{key:<32}  {value:.4g}" if isinstance(value, float) else f"{key:<32}  {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
