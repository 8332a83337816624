"""Time `rlhf data prepare` on synthetic prompts (default 1 million).

    python benchmarks/prepare_1m.py [--n 1000000] [--work DIR]

Writes a JSONL of prompts with a realistic mix: templated prompts whose long
prefix repeats (dedup hits), a few heavy users over the 200 cap, a long tail of
light users, and PII in about 5% of prompts. Prints the wall time of prepare,
prompts/s and the peak resident memory of the process (Linux ru_maxrss)."""

from __future__ import annotations

import argparse
import json
import random
import resource
import tempfile
import time
from pathlib import Path

VERBS = ["Write", "Summarize", "List", "Explain", "Rewrite", "Classify", "Translate", "Describe", "Compare", "Draft"]
TOPICS = ["a bear at the beach", "the French revolution", "quantum computing", "my career", "a birthday party",
          "climate policy", "a job interview", "the water cycle", "a startup pitch", "medieval castles"]
PII = ["email me at {u}@example.com", "call me on 555-{a:03d}-{b:04d}", "my name is Jennifer Lopez",
       "ship it to {a} Maple Street", "my server is 10.0.{a}.{b}", "card 4111 1111 1111 1111"]


def synth(n: int, path: Path, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            # 2% of prompts from 20 heavy users (~1000 each, so each is capped at 200), the rest from 150k users.
            user = f"heavy-{rng.randrange(20)}" if rng.random() < 0.02 else f"u-{rng.randrange(150_000)}"
            if rng.random() < 0.1:  # a template reused with a different tail: a prefix duplicate
                prompt = f"{VERBS[i % 3]} a detailed, step by step, beginner friendly guide about {TOPICS[i % 4]} " \
                         f"for my class, number {i}"
            else:
                prompt = f"{rng.choice(VERBS)} {rng.choice(TOPICS)} #{i} in {rng.randint(20, 300)} words, " \
                         f"for reader {rng.randrange(10**6)}."
            if rng.random() < 0.05:
                prompt += " " + rng.choice(PII).format(u=user, a=rng.randrange(1000), b=rng.randrange(10000))
            f.write(json.dumps({"id": f"p-{i}", "prompt": prompt, "user_id": user, "source": "customer"}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--work", help="folder for the input and output (default: a temporary folder)")
    args = parser.parse_args()
    from rlhf.data.prepare import PrepareConfig, prepare

    work = Path(args.work or tempfile.mkdtemp(prefix="prepare-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    src = work / "prompts.jsonl"
    t0 = time.perf_counter()
    synth(args.n, src)
    print(f"synthesised {args.n:,} prompts ({src.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    report = prepare(src, work / "out", PrepareConfig(progress=False))
    seconds = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(report, indent=2))
    print(f"prepare: {args.n:,} prompts in {seconds:.1f} s ({args.n / seconds:,.0f} prompts/s), "
          f"peak RSS {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
