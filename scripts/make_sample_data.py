"""Write the small sample data set the repo ships in data/sample/ (one file per format).

    python scripts/make_sample_data.py [--out data/sample] [--seed 0]

Deterministic from the seed. The comparisons follow a hidden rule a reward model
can learn: a response is better the more "courtesy" words (please, thanks, kindly,
gladly) and the fewer "rude" words (whatever, ugh, no) it has; equal counts tie.
Demonstrations are small mechanical tasks (repeat, reverse, add, greet) so SFT
loss has somewhere to fall to.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

WORDS = ("apple river stone cloud tiger lamp garden music orange window bread candle forest silver "
         "paper bridge summer winter yellow purple rabbit castle ocean pencil").split()
NAMES = "Ada Ben Cara Dev Eli Fay Gus Hana Ivo Jun".split()
GOOD = ("please", "thanks", "kindly", "gladly")
BAD = ("whatever", "ugh", "no")
CATEGORIES = ("generation", "open_qa", "brainstorming", "chat", "rewrite", "summarization",
              "classification", "closed_qa", "extract", "other")


def task(rng: random.Random) -> tuple[str, str, str]:
    """(prompt, ideal response, category)."""
    kind = rng.choice(("repeat", "reverse", "add", "greet"))
    words = rng.sample(WORDS, rng.randint(2, 5))
    if kind == "repeat":
        return f"Repeat after me: {' '.join(words)}", " ".join(words), "rewrite"
    if kind == "reverse":
        return f"Reverse the words: {' '.join(words)}", " ".join(reversed(words)), "rewrite"
    if kind == "add":
        a, b = rng.randint(0, 50), rng.randint(0, 50)
        return f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}.", "closed_qa"
    name = rng.choice(NAMES)
    return f"Say hello to {name}.", f"Hello, {name}! Nice to meet you.", "chat"


def ideal_response(prompt) -> str | None:
    """The demonstration `task` would write for a sample prompt (a string or a conversation), or None."""
    text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
    if text.startswith("Repeat after me: "):
        return text.removeprefix("Repeat after me: ")
    if text.startswith("Reverse the words: "):
        return " ".join(reversed(text.removeprefix("Reverse the words: ").split()))
    if text.startswith("What is ") and " plus " in text:
        a, b = text.removeprefix("What is ").rstrip("?").split(" plus ")
        return f"{a} plus {b} is {int(a) + int(b)}."
    if text.startswith("Say hello to "):
        return f"Hello, {text.removeprefix('Say hello to ').rstrip('.')}! Nice to meet you."
    return None


def judge_by_task(prompt, response_a: str, response_b: str) -> float:
    """An eval judge for the sample prompts: does the response contain the task's right answer? The
    sample comparisons (so the reward model, so PPO) only ever rewarded courtesy words, so this is a
    judgment PPO never optimised: p(a better) is 1, 0 or 0.5 (both or neither right)."""
    ideal = ideal_response(prompt)
    right_a, right_b = (ideal is not None and ideal in r for r in (response_a, response_b))
    return 0.5 if right_a == right_b else float(right_a)


def as_prompt(text: str, rng: random.Random):
    """A third of the prompts are conversations, to exercise chat templates."""
    if rng.random() < 1 / 3:
        return [{"role": "user", "content": text}]
    return text


def courtesy(response: str) -> int:
    words = response.replace(",", " ").replace(".", " ").split()
    return sum(w in GOOD for w in words) - sum(w in BAD for w in words)


def candidate(rng: random.Random, ideal: str) -> str:
    extra = [rng.choice(GOOD + BAD) for _ in range(rng.randint(0, 3))]
    body = ideal if rng.random() < 0.5 else " ".join(rng.sample(WORDS, rng.randint(2, 4)))
    parts = extra[: len(extra) // 2] + [body] + extra[len(extra) // 2 :]
    return " ".join(parts)


def ranking_by_rule(responses: list[str]) -> list:
    """Groups best first by the hidden courtesy score; flat list when there are no ties."""
    scores = sorted({courtesy(r) for r in responses}, reverse=True)
    groups = [[i for i, r in enumerate(responses) if courtesy(r) == s] for s in scores]
    return [g[0] for g in groups] if all(len(g) == 1 for g in groups) else groups


def make(seed: int) -> dict[str, list[dict]]:
    rng = random.Random(seed)
    users = [f"u-{i:04d}" for i in range(40)]
    labelers = [f"L{i:02d}" for i in range(8)]
    data: dict[str, list[dict]] = {k: [] for k in ("prompts", "demonstrations", "comparisons", "pairwise", "pretrain", "samples")}
    for i in range(400):
        text, ideal, category = task(rng)
        data["prompts"].append({"id": f"p-{i:06d}", "prompt": as_prompt(text, rng), "user_id": rng.choice(users),
                                "source": rng.choice(("labeler", "customer")), "category": category})
        data["demonstrations"].append({"prompt": as_prompt(text, rng), "response": ideal,
                                       "labeler_id": rng.choice(labelers), "prompt_id": f"p-{i:06d}"})
    for i in range(300):
        text, ideal, _ = task(rng)
        k = rng.randint(2, 9) if i % 3 else 4
        responses = [candidate(rng, ideal) for _ in range(k)]
        data["comparisons"].append({
            "prompt": as_prompt(text, rng), "responses": responses, "ranking": ranking_by_rule(responses),
            "labeler_id": rng.choice(labelers), "prompt_id": f"c-{i:06d}",
            "likert": [max(1, min(7, 4 + courtesy(r))) for r in responses],
            "flags": [{"fails_instruction": r.split()[0] in BAD} for r in responses],
        })
    for i in range(200):
        text, ideal, _ = task(rng)
        while True:
            a, b = candidate(rng, ideal), candidate(rng, ideal)
            if courtesy(a) != courtesy(b):
                break
        chosen, rejected = (a, b) if courtesy(a) > courtesy(b) else (b, a)
        data["pairwise"].append({"prompt": text, "chosen": chosen, "rejected": rejected})
    for _ in range(500):
        words = [rng.choice(WORDS + list(GOOD)) for _ in range(rng.randint(8, 30))]
        data["pretrain"].append({"text": " ".join(words).capitalize() + "."})
    for i in range(200):
        text, ideal, _ = task(rng)
        data["samples"].append({"prompt_id": f"p-{i % 400:06d}", "prompt": text, "model": "sample-model",
                                "response": candidate(rng, ideal), "reward": round(rng.uniform(-2, 2), 3)})
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "data" / "sample"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = make(args.seed)
    split = {"demonstrations": 350, "comparisons": 250}
    for name, records in data.items():
        if name in split:
            n = split[name]
            _write(out / f"{name}_train.jsonl", records[:n])
            _write(out / f"{name}_valid.jsonl", records[n:])
        else:
            _write(out / f"{name}.jsonl", records)
    print(f"wrote {', '.join(f'{len(v)} {k}' for k, v in data.items())} to {out}")


def _write(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


if __name__ == "__main__":
    main()
