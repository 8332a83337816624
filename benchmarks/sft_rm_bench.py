"""SFT tokens/s and reward-model comparisons/s on a fixed tiny GPT-2, side by side with TRL.

    .venv/bin/python benchmarks/sft_rm_bench.py [--steps 30] [--only ours|trl] [--precision fp32 bf16] [--k 4 9]

The model: GPT-2 shape, 4 layers, width 256, 4 heads, vocab 2048, random weights,
dropout off. SFT rows are 256 tokens (128 prompt + 128 response), batch 8. RM
rankings have K responses of 32 tokens after a 96-token prompt; we take 2 rankings
a micro-batch, TRL's RewardTrainer gets the same rankings expanded into C(K,2)
chosen/rejected pairs, 8 pairs a batch. Both sides see identical text and count
throughput the same way: tokens (or rankings) trained divided by the wall time of
the training loop after a warm-up, excluding set-up. TRL runs twice: with its own
defaults (`trl`), and in its best fair setting (`trl_best`: gradient checkpointing
off, which TRL 1.x turns on by default and ours leaves off). TRL is optional
(`pip install -e .[bench]`); without it only our numbers are printed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def make_model(dir_: Path) -> Path:
    from rlhf.core.tiny import build_tiny_model

    rng = random.Random(0)
    words = ["".join(rng.choice(LETTERS) for _ in range(rng.randint(2, 7))) for _ in range(3000)]
    texts = [" ".join(rng.choice(words) for _ in range(200)) for _ in range(200)]
    build_tiny_model(dir_, arch="gpt2", texts=texts, vocab_size=2048, n_layer=4, d_model=256, n_head=4, max_len=512)
    (dir_ / "words.json").write_text(json.dumps(words))
    return dir_


def text_of(tok, words, rng, n_tokens: int) -> str:
    """A string of random words that encodes to exactly n_tokens tokens."""
    ids: list[int] = []
    while len(ids) < n_tokens:
        ids += tok(" " + rng.choice(words), add_special_tokens=False)["input_ids"]
    return tok.decode(ids[:n_tokens])


def sft_data(model_dir: Path, n: int) -> Path:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    words = json.loads((model_dir / "words.json").read_text())
    rng = random.Random(1)
    path = model_dir / "sft.jsonl"
    # 128 + 127 tokens + EOS = 256 per row.
    rows = [{"prompt": text_of(tok, words, rng, 128), "response": text_of(tok, words, rng, 127)} for _ in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rm_data(model_dir: Path, n: int, k: int) -> Path:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    words = json.loads((model_dir / "words.json").read_text())
    rng = random.Random(2)
    path = model_dir / f"rm_k{k}.jsonl"
    rows = []
    for _ in range(n):
        ranking = list(range(k))
        rng.shuffle(ranking)
        rows.append({"prompt": text_of(tok, words, rng, 96),
                     "responses": [text_of(tok, words, rng, 31) for _ in range(k)], "ranking": ranking})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def fresh_accelerator_state() -> None:
    """Each run here picks its own precision in one process; accelerate keeps the first run's state (a stage
    never resets it: one stage is one process), so the benchmark clears it between runs itself."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=False)


def ours_sft(model_dir: Path, data: Path, steps: int, precision: str, out: Path, compile: bool = False) -> float:
    from rlhf.config import load_config
    from rlhf.sft.config import SFTConfig
    from rlhf.sft.train import main

    config = load_config(SFTConfig, None, [
        f"model={model_dir}", f"train_file={data}", "epochs=100", f"max_steps={steps}", "batch_size=8",
        "micro_batch_size=8", "max_length=256", "lr=1e-4", f"precision={precision}", f"logging_steps={steps // 3}",
        "warmup_ratio=0", f"compile={str(compile).lower()}"])
    fresh_accelerator_state()
    main(config, out)
    # Throughput of the last two logging windows: the first includes warm-up.
    rows = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    rates = [r["sft/tokens_per_s"] for r in rows if "sft/tokens_per_s" in r]
    return sum(rates[1:]) / len(rates[1:])


def ours_rm(model_dir: Path, data: Path, steps: int, precision: str, out: Path, compile: bool = False) -> float:
    from rlhf.config import load_config
    from rlhf.rm.config import RMConfig
    from rlhf.rm.train import main

    config = load_config(RMConfig, None, [
        f"model={model_dir}", f"train_file={data}", "epochs=100", f"max_steps={steps}", "batch_size=2",
        "micro_batch_size=2", "max_length=256", "lr=1e-5", f"precision={precision}", f"logging_steps={steps // 3}",
        "warmup_ratio=0", "norm_max_records=8", f"compile={str(compile).lower()}"])
    fresh_accelerator_state()
    main(config, out)
    rows = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    rates = [r["rm/rankings_per_s"] for r in rows if "rm/rankings_per_s" in r]
    return sum(rates[1:]) / len(rates[1:])


class _Timer:
    """A TrainerCallback measuring wall time between step `warmup` and the last step."""

    def __init__(self, warmup: int):
        from transformers import TrainerCallback

        timer = self

        class CB(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                if state.global_step == warmup:
                    timer.start = time.perf_counter()
                timer.end, timer.steps = time.perf_counter(), state.global_step - warmup

        self.callback = CB()
        self.start = self.end = 0.0
        self.steps = 0


def trl_sft(model_dir: Path, data: Path, steps: int, precision: str, out: Path, best: bool = False) -> float:
    """TRL's SFTTrainer with its defaults, or in its best fair setting: TRL 1.x turns gradient
    checkpointing on by default (recomputing every forward), which ours does not do unless asked."""
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    rows = [json.loads(l) for l in data.read_text().splitlines()]
    ds = datasets.Dataset.from_list([{"prompt": r["prompt"], "completion": r["response"]} for r in rows])
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    warmup = max(1, steps // 3)
    timer = _Timer(warmup)
    kwargs = {"gradient_checkpointing": False} if best else {}
    args = SFTConfig(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=8, max_length=256, learning_rate=1e-4,
        logging_steps=steps, report_to="none", save_strategy="no", use_cpu=True, bf16=precision == "bf16",
        completion_only_loss=True, packing=False, **kwargs)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, callbacks=[timer.callback])
    trainer.train()
    return timer.steps * 8 * 256 / (timer.end - timer.start)


def trl_rm(model_dir: Path, data: Path, steps: int, precision: str, out: Path, k: int, best: bool = False) -> float:
    import datasets
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from rlhf.data import read_records
    from rlhf.data.rankings import ranking_pairs

    pairs = []
    for r in read_records(data, "comparison"):
        pairs += [{"prompt": r["prompt"], "chosen": r["responses"][w], "rejected": r["responses"][l]}
                  for w, l in ranking_pairs(r["ranking"])]
    ds = datasets.Dataset.from_list(pairs)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    warmup = max(1, steps // 3)
    timer = _Timer(warmup)
    args = RewardConfig(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=8, max_length=256, learning_rate=1e-5,
        logging_steps=steps, report_to="none", save_strategy="no", use_cpu=True, bf16=precision == "bf16",
        dataloader_num_workers=0, **({"gradient_checkpointing": False} if best else {}))
    trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, callbacks=[timer.callback])
    trainer.train()
    pairs_per_s = timer.steps * 8 / (timer.end - timer.start)
    return pairs_per_s / math.comb(k, 2)  # rankings/s: each ranking is C(K, 2) pair rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--only", choices=["ours", "trl"], default=None)
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--k", type=int, nargs="+", default=[4, 9])
    parser.add_argument("--skip", nargs="*", default=[], choices=["sft", "rm"])
    parser.add_argument("--compile", action="store_true", help="also run ours with compile=true (first third of steps is warm-up)")
    args = parser.parse_args()
    try:
        import trl  # noqa: F401

        have_trl = args.only != "ours"
    except ImportError:
        have_trl = False
        print("TRL not installed: printing our numbers only (pip install -e .[bench] for the side-by-side)")
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = make_model(tmp / "model")
        results = {}
        if "sft" not in args.skip:
            data = sft_data(model_dir, 8 * (args.steps + 2))
            for precision in args.precision:
                if args.only != "trl":
                    results[f"sft/ours/{precision}/tokens_per_s"] = ours_sft(model_dir, data, args.steps, precision, tmp / f"o-sft-{precision}")
                    if args.compile:
                        results[f"sft/ours_compiled/{precision}/tokens_per_s"] = ours_sft(
                            model_dir, data, args.steps, precision, tmp / f"c-sft-{precision}", compile=True)
                if have_trl:
                    results[f"sft/trl/{precision}/tokens_per_s"] = trl_sft(model_dir, data, args.steps, precision, tmp / f"t-sft-{precision}")
                    results[f"sft/trl_best/{precision}/tokens_per_s"] = trl_sft(
                        model_dir, data, args.steps, precision, tmp / f"tb-sft-{precision}", best=True)
                print(json.dumps({k: round(v, 1) for k, v in results.items()}), flush=True)
        if "rm" not in args.skip:
            for k in args.k:
                data = rm_data(model_dir, 2 * (args.steps + 2) + 8, k)
                if args.only != "trl":
                    r = ours_rm(model_dir, data, args.steps, "fp32", tmp / f"o-rm-{k}")
                    results[f"rm/ours/k{k}/rankings_per_s"] = r
                    results[f"rm/ours/k{k}/comparisons_per_s"] = r * math.comb(k, 2)
                    if args.compile:
                        results[f"rm/ours_compiled/k{k}/rankings_per_s"] = ours_rm(
                            model_dir, data, args.steps, "fp32", tmp / f"c-rm-{k}", compile=True)
                if have_trl:
                    # TRL sees C(K,2) pairs per ranking; its steps are smaller, so give it more of them.
                    r = trl_rm(model_dir, data, args.steps * 2, "fp32", tmp / f"t-rm-{k}", k)
                    results[f"rm/trl/k{k}/rankings_per_s"] = r
                    results[f"rm/trl_best/k{k}/rankings_per_s"] = trl_rm(
                        model_dir, data, args.steps * 2, "fp32", tmp / f"tb-rm-{k}", k, best=True)
                print(json.dumps({k: round(v, 2) for k, v in results.items()}), flush=True)
    print("\nresults")
    for key, value in results.items():
        print(f"  {key:<36} {value:10.2f}")
    ratios = [(f"SFT {p}", f"sft/{{}}/{p}/tokens_per_s", "") for p in args.precision]
    ratios += [(f"RM K={k}", f"rm/{{}}/k{k}/rankings_per_s", " (rankings/s)") for k in args.k]
    for label, key, unit in ratios:
        for trl_variant in ("trl", "trl_best"):
            for variant in ("ours", "ours_compiled"):
                o, t = results.get(key.format(variant)), results.get(key.format(trl_variant))
                if o and t:
                    print(f"  {label}: {variant} / {trl_variant} = {o / t:.2f}x{unit}")


if __name__ == "__main__":
    main()
