"""Dataset builders: the world's files for every stage, in the ratios of Table 6.

Table 6 of the paper counts prompts: SFT 12,725 train (11,295 labeler, 1,430
customer), RM 33,207 train (6,623 labeler, 26,584 customer), PPO 31,144 train
(customer only), with validation sets beside them. `TABLE6` holds those counts;
`scale` shrinks them (the default 1/40 gives ~320 SFT, ~830 RM and ~780 PPO
training prompts). Evaluation prompts come from customers of the test split,
whom no training set has seen, and no prompt text appears in two sets.
"""

from __future__ import annotations

import json
from pathlib import Path

from rlhf.world import World

# (set, split) -> {source: prompts}, Table 6 of the paper.
TABLE6 = {
    ("sft", "train"): {"labeler": 11295, "customer": 1430},
    ("sft", "valid"): {"labeler": 1550, "customer": 103},
    ("rm", "train"): {"labeler": 6623, "customer": 26584},
    ("rm", "valid"): {"labeler": 3488, "customer": 14399},
    ("ppo", "train"): {"customer": 31144},
    ("ppo", "valid"): {"customer": 16185},
}
DEFAULT_SCALE = 1 / 40
VALID_SCALE = 0.25  # validation sets are shrunk 4x further: they only need to be large enough to measure


def sizes(scale: float = DEFAULT_SCALE, ppo_scale: float | None = None) -> dict[tuple[str, str], dict[str, int]]:
    """Prompt counts per (set, split, source) at `scale` (at least 1 each); `ppo_scale`, when given, scales
    the PPO sets instead (PPO needs several passes over its prompts, so a budget may want fewer of them)."""
    out = {}
    for key, by_source in TABLE6.items():
        s = (scale if ppo_scale is None or key[0] != "ppo" else ppo_scale) * (VALID_SCALE if key[1] == "valid" else 1.0)
        out[key] = {src: max(1, round(n * s)) for src, n in by_source.items()}
    return out


def build_prompt_sets(world: World, scale: float = DEFAULT_SCALE, n_eval: int = 200,
                      ppo_scale: float | None = None) -> dict[str, list[dict]]:
    """Every prompt set, disjoint in text: {"sft_train": [...], ..., "eval": [...]}.
    Evaluation prompts are drawn first so that they stay fixed as `scale` changes."""
    used: set[str] = set()
    sets = {"eval": world.prompts(n_eval, split="test", source="customer", stream="eval")}
    used.update(p["prompt"] for p in sets["eval"])
    for (name, split), by_source in sizes(scale, ppo_scale).items():
        records = []
        for source, n in by_source.items():
            new = world.prompts(n, split=split, source=source, exclude=used, stream=name)
            used.update(p["prompt"] for p in new)
            records += new
        sets[f"{name}_{split}"] = records
    return sets


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


CHAT_FILES = ("sft_train.jsonl", "sft_valid.jsonl", "eval_prompts.jsonl", "rm_train_prompts.jsonl",
              "rm_valid_prompts.jsonl", "ppo_train_prompts.jsonl", "ppo_valid_prompts.jsonl")
"""The files of build_datasets whose records hold a prompt."""


def chat_prompt(prompt: str) -> list[dict]:
    """A plain prompt as a one-turn conversation (formats: prompts), which the model's chat template renders."""
    return [{"role": "user", "content": prompt}]


def chat_records(records: list[dict]) -> list[dict]:
    """Copies of prompt records (demonstrations, comparisons) with each prompt as a one-turn conversation."""
    return [{**r, "prompt": chat_prompt(r["prompt"])} for r in records]


def build_datasets(world: World, out_dir: str | Path, scale: float = DEFAULT_SCALE, n_eval: int = 200,
                   n_pretrain: int = 20000, n_heldout_text: int = 1000, n_nlp: int = 500,
                   ppo_scale: float | None = None, chat: bool = False) -> dict[str, int]:
    """Write the world's data to `out_dir` and return the record count of each file:
    - sft_{train,valid}.jsonl: demonstrations by the training labelers
    - {rm,ppo}_{train,valid}_prompts.jsonl, eval_prompts.jsonl: prompt records
      (comparisons need model samples: rank them with `world.comparisons`)
    - pretrain.jsonl, pretrain_heldout.jsonl: {"text": ...} documents
    - nlp_tasks.jsonl: cloze records for the alignment-tax accuracy
    - tokenizer/: the word-level tokenizer
    With `chat`, every prompt is written as a one-turn conversation (`chat_prompt`)."""
    out = Path(out_dir)
    sets = build_prompt_sets(world, scale, n_eval, ppo_scale)
    files = {
        "sft_train.jsonl": world.demonstrations(sets["sft_train"]),
        "sft_valid.jsonl": world.demonstrations(sets["sft_valid"]),
        "eval_prompts.jsonl": sets["eval"],
        "pretrain.jsonl": [{"text": t} for t in world.pretraining_text(n_pretrain)],
        "pretrain_heldout.jsonl": [{"text": t} for t in world.pretraining_text(n_heldout_text, split="heldout")],
        "nlp_tasks.jsonl": world.nlp_tasks(n_nlp),
    }
    for name in ("rm_train", "rm_valid", "ppo_train", "ppo_valid"):
        files[f"{name}_prompts.jsonl"] = sets[name]
    for name, records in files.items():
        write_jsonl(out / name, chat_records(records) if chat and name in CHAT_FILES else records)
    world.tokenizer(out / "tokenizer")
    return {name: len(records) for name, records in files.items()}
