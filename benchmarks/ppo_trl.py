"""TRL side of the PPO benchmark, on the same tiny setup as benchmarks/ppo_bench.py (same
policy/reference/reward/value shapes, 16 episodes an update, 32-token responses):

- `--trainer rloo`: TRL's RLOO trainer, one optimisation pass, for the "faster than RLOO
  with one PPO epoch" comparison (TRL 1.16, the `bench` extra).
- `--trainer ppo`: TRL's PPO trainer (`trl.experimental.ppo.PPOTrainer`), 4 PPO epochs
  and one mini-batch, for the "2x TRL's PPO" comparison. It left TRL after 1.12, so it
  runs from a side install that leaves the venv alone:

    pip install --no-deps --target /tmp/trl112 trl==1.12.0
    PYTHONPATH=/tmp/trl112 python benchmarks/ppo_trl.py --trainer ppo

    python benchmarks/ppo_trl.py [--trainer rloo|ppo] [--steps 5] [--precision fp32] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def make_clock():
    """A TrainerCallback that stamps wall and CPU time at the end of every update; `rates` turns the stamps
    into episodes/s (16 an update), leaving out the first update (warm-up)."""
    from transformers import TrainerCallback

    class _Clock(TrainerCallback):
        def __init__(self):
            self.stamps: list[tuple[float, float]] = []

        def on_step_end(self, *args, **kwargs):
            self.stamps.append((time.perf_counter(), time.process_time()))

        def rates(self, name: str, checkpointing: bool) -> dict:
            n = len(self.stamps) - 1
            per_update = (self.stamps[-1][0] - self.stamps[0][0]) / n
            cpu_per_update = (self.stamps[-1][1] - self.stamps[0][1]) / n
            name += "" if checkpointing else "_best"
            return {f"{name}/episodes_per_s": 16 / per_update, f"{name}/seconds_per_update": per_update,
                    f"{name}/episodes_per_cpu_s": 16 / cpu_per_update}

    return _Clock()


def rloo_run(setup: dict, steps: int, precision: str = "fp32", checkpointing: bool = True) -> dict:
    import datasets
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
    clock = make_clock()
    with tempfile.TemporaryDirectory() as out:
        config = RLOOConfig(
            output_dir=out, per_device_train_batch_size=16, num_generations=2, max_completion_length=32,
            num_iterations=1, steps_per_generation=1, beta=0.05, temperature=1.0, max_steps=steps, learning_rate=1e-5,
            logging_steps=1000, report_to=[], save_strategy="no", use_cpu=not torch.cuda.is_available(),
            disable_dropout=True, bf16=precision == "bf16", gradient_checkpointing=checkpointing)
        trainer = RLOOTrainer(model=setup["policy"], reward_funcs=reward, args=config, train_dataset=data,
                              processing_class=load_tokenizer(setup["policy"], padding_side="left"), callbacks=[clock])
        trainer.train()
    return clock.rates("trl_rloo", checkpointing)


def ppo_run(setup: dict, steps: int, precision: str = "fp32", checkpointing: bool = True) -> dict:
    """TRL's PPOTrainer: reward and value models are sequence classifiers from the policy's body (random
    heads: the score does not change the work done), 4 PPO epochs, one mini-batch, 32 new tokens."""
    import datasets
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    try:
        from trl.experimental.ppo import PPOConfig, PPOTrainer
    except ImportError as e:
        raise SystemExit(f"TRL's PPO trainer is not importable ({e}); it shipped up to TRL 1.12: "
                         "pip install --no-deps --target /tmp/trl112 trl==1.12.0 and run with PYTHONPATH=/tmp/trl112")
    from rlhf.core.models import load_tokenizer
    from rlhf.core.tokens import encode_prompt
    from rlhf.data import read_records

    tok = load_tokenizer(setup["policy"], padding_side="left")
    ids = [encode_prompt(tok, r["prompt"]) for r in read_records(setup["prompts_file"], "prompt")]
    data = datasets.Dataset.from_list([{"input_ids": x} for x in ids * (steps + 2)])
    clock = make_clock()

    def classifier():
        return AutoModelForSequenceClassification.from_pretrained(setup["policy"], num_labels=1)

    with tempfile.TemporaryDirectory() as out:
        config = PPOConfig(
            output_dir=out, per_device_train_batch_size=16, gradient_accumulation_steps=1, num_mini_batches=1,
            num_ppo_epochs=4, response_length=32, total_episodes=16 * steps, local_rollout_forward_batch_size=16,
            temperature=1.0, learning_rate=1e-5, kl_coef=0.05, logging_steps=1000, report_to=[], save_strategy="no",
            num_sample_generations=0, use_cpu=not torch.cuda.is_available(), bf16=precision == "bf16",
            gradient_checkpointing=checkpointing)
        trainer = PPOTrainer(args=config, processing_class=tok, model=AutoModelForCausalLM.from_pretrained(setup["policy"]),
                             ref_model=None, reward_model=classifier(), value_model=classifier(), train_dataset=data,
                             callbacks=[clock])
        trainer.train()
    return clock.rates("trl_ppo", checkpointing)


def main() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from ppo_bench import build_setup

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trainer", default="rloo", choices=["rloo", "ppo"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--prompts", default="data/sample/prompts.jsonl")
    parser.add_argument("--json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        setup = build_setup(Path(tmp), args.prompts)
        results = {"threads": torch.get_num_threads(), "precision": args.precision}
        run = rloo_run if args.trainer == "rloo" else ppo_run
        # TRL's defaults turn gradient checkpointing on (recomputing every forward); ours leave it off,
        # so TRL's best fair setting turns it off too. Both are reported.
        for checkpointing in (True, False):
            results.update(run(setup, args.steps, args.precision, checkpointing))
    for key, value in results.items():
        print(f"{key:<32}  {value:.4g}" if isinstance(value, float) else f"{key:<32}  {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
