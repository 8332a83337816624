"""Preparing customer prompts as the paper did (section 3.2), in one streaming pass.

For each prompt, in input order:
  0. drop it if it is longer than `max_prompt_chars`: one pasted log file should not
     decide how long the pass takes;
  1. mask personal information (pii.py), counting each kind found;
  2. drop it if its first `prefix_chars` characters (normalised) equal those of an
     earlier prompt: "we heuristically deduplicate prompts by checking for prompts
     that share a long common prefix";
  3. drop it if its user already has `max_per_user` prompts: "we limit the number
     of prompts to 200 per user ID";
  4. tag its category if asked and it has none;
  5. write it to the split its user id hashes to: "we create our train, validation,
     and test splits based on user ID, so that the validation and test sets contain
     no data from users whose data is in the training set".

Memory holds one 64-bit hash per distinct prefix and one counter per user, never
the prompts, and each step is O(1) per prompt. Masking comes before dedup so that
prompts that differ only in a name or an email ("Hi, I'm Ann ..." / "Hi, I'm Bo ...")
count as the duplicates they are; finds are counted only for prompts that are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from rlhf.core.io import atomic_write_json, atomic_write_text
from rlhf.data.categories import tag_category
from rlhf.data.files import iter_records
from rlhf.data.pii import KINDS as PII_KINDS
from rlhf.data.pii import scrub
from rlhf.data.prompt_log import is_prompt_log, iter_logged_prompts
from rlhf.data.records import CATEGORIES

SPLITS = ("train", "valid", "test")
# Only these fields are written: any other field of the input was not scrubbed.
OUTPUT_FIELDS = ("id", "prompt", "user_id", "source", "category")


@dataclass
class PrepareConfig:
    max_per_user: int = 200
    """Most prompts kept per user id (paper 3.2: 200); 0 means no cap."""
    prefix_chars: int = 64
    """Prompts whose first this-many characters (lowercased, whitespace collapsed) match an earlier one are dropped."""
    max_prompt_chars: int = 32_768
    """Longer prompts (a conversation: all its messages together) are dropped before masking and counted as
    dropped/too_long; about 8k tokens of English. 0 means no cap."""
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    """Expected shares of users in train, valid and test."""
    seed: int = 0
    """Salt of the user-id hash: another seed gives another split of the same users."""
    scrub_pii: bool = True
    """Replace emails, phone numbers and other personal data in prompts with placeholders (pii.py)."""
    tag_categories: bool = False
    """Fill in a keyword-guessed category where a prompt has none (categories.py)."""
    skip_bad_records: bool = False
    """Count and skip invalid records instead of stopping at the first one."""
    progress: bool = True
    """Show a progress bar while reading."""

    def validate(self) -> None:
        if self.max_per_user < 0:
            raise ValueError(f"max_per_user must be >= 0, got {self.max_per_user}")
        if self.max_prompt_chars < 0:
            raise ValueError(f"max_prompt_chars must be >= 0, got {self.max_prompt_chars}")
        if self.prefix_chars < 1:
            raise ValueError(f"prefix_chars must be >= 1, got {self.prefix_chars}")
        if len(self.fractions) != 3 or any(f < 0 for f in self.fractions) or abs(sum(self.fractions) - 1) > 1e-6:
            raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {self.fractions}")


@dataclass
class Tally:
    """Counts for report.json and stats.md."""

    report: Counter = field(default_factory=Counter)
    categories: Counter = field(default_factory=Counter)  # category -> kept prompts
    sizes: Counter = field(default_factory=Counter)  # (split, source) -> kept prompts
    users: dict = field(default_factory=lambda: {s: set() for s in SPLITS})  # for the no-user-crosses check


_SPACE = re.compile(r"\s+")


def prefix_key(prompt: str | list[dict], n: int) -> int:
    """A 64-bit hash of the first `n` characters of the normalised prompt text."""
    text = prompt if isinstance(prompt, str) else "\n".join(f"{m['role']}: {m['content']}" for m in prompt)
    head = _SPACE.sub(" ", text[: 4 * n].lower()).strip()[:n]  # 4n raw chars hold n normalised ones
    return int.from_bytes(hashlib.blake2b(head.encode("utf-8"), digest_size=8).digest(), "little")


def split_of(user: str, fractions: tuple[float, float, float], seed: int) -> str:
    """The split a user id hashes to: the same for every prompt of the user, on every run."""
    digest = hashlib.blake2b(f"{seed}:{user}".encode("utf-8"), digest_size=8).digest()
    u = int.from_bytes(digest, "little") / 2**64  # uniform in [0, 1)
    edge = 0.0
    for name, fraction in zip(SPLITS, fractions):
        edge += fraction
        if u < edge:
            return name
    return next(name for name, f in reversed(list(zip(SPLITS, fractions))) if f > 0)


def prompt_chars(prompt: str | list[dict]) -> int:
    return len(prompt) if isinstance(prompt, str) else sum(len(m["content"]) for m in prompt)


def scrub_prompt(prompt: str | list[dict], counts: dict[str, int]) -> str | list[dict]:
    if isinstance(prompt, str):
        return scrub(prompt, counts)
    return [{**m, "content": scrub(m["content"], counts)} for m in prompt]


def read_prompts(source: str | Path, skip_bad_records: bool, stats: dict) -> Iterator[dict]:
    """Prompt records from a serving log (SQLite) or any prompts file formats.md allows."""
    if is_prompt_log(source):
        return iter_logged_prompts(source, skip_bad_records=skip_bad_records, stats=stats)
    return iter_records(source, "prompt", skip_bad_records=skip_bad_records, stats=stats)


class SplitWriter:
    """Streams each split to a temporary file; `commit` fsyncs and renames them all into place."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.files = {}
        for name in SPLITS:
            fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.jsonl.", suffix=".tmp")
            self.files[name] = (os.fdopen(fd, "w", encoding="utf-8"), Path(tmp))

    def write(self, split: str, record: dict) -> None:
        self.files[split][0].write(json.dumps(record, ensure_ascii=False) + "\n")

    def commit(self) -> None:
        for name, (f, tmp) in self.files.items():
            f.flush()
            os.fsync(f.fileno())
            f.close()
            os.replace(tmp, self.out_dir / f"{name}.jsonl")

    def abort(self) -> None:
        for f, tmp in self.files.values():
            f.close()
            tmp.unlink(missing_ok=True)


def prepare(source: str | Path, out_dir: str | Path, config: PrepareConfig) -> dict:
    """Write train/valid/test.jsonl, stats.md and report.json to `out_dir`; return the report."""
    from tqdm import tqdm

    config.validate()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seen: set[int] = set()
    per_user: Counter = Counter()
    tally = Tally()
    read_stats: dict = {}
    writer = SplitWriter(out_dir)
    try:
        records = read_prompts(source, config.skip_bad_records, read_stats)
        for record in tqdm(records, desc="prepare", unit=" prompts", disable=not config.progress, mininterval=2):
            _one(record, config, seen, per_user, tally, writer)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    report = _report(tally, read_stats, config)
    atomic_write_json(out_dir / "report.json", report)
    atomic_write_text(out_dir / "stats.md", render_stats(tally, report, source, config))
    return report


def _one(record: dict, config: PrepareConfig, seen: set, per_user: Counter, tally: Tally, writer: SplitWriter) -> None:
    tally.report["input"] += 1
    if config.max_prompt_chars and prompt_chars(record["prompt"]) > config.max_prompt_chars:
        tally.report["dropped/too_long"] += 1
        return
    found: dict[str, int] = {}
    prompt = scrub_prompt(record["prompt"], found) if config.scrub_pii else record["prompt"]
    key = prefix_key(prompt, config.prefix_chars)
    if key in seen:
        tally.report["dropped/prefix_duplicate"] += 1
        return
    seen.add(key)
    user = record.get("user_id")
    if user is not None:
        user = str(user)
        per_user[user] += 1
        if config.max_per_user and per_user[user] > config.max_per_user:
            tally.report["dropped/over_user_cap"] += 1
            return
    tally.report.update({f"pii/{kind}": n for kind, n in found.items()})
    out = {k: record[k] for k in OUTPUT_FIELDS if record.get(k) is not None}
    out["prompt"] = prompt
    if config.tag_categories and "category" not in out:
        out["category"] = tag_category(prompt)
    # A prompt without a user id is its own user: hashed by its id, else by its prefix.
    split_key = user if user is not None else f"~{record.get('id', key)}"
    split = split_of(split_key, config.fractions, config.seed)
    writer.write(split, out)
    tally.report[f"split/{split}"] += 1
    tally.categories[out.get("category", "untagged")] += 1
    tally.sizes[(split, out.get("source", "unknown"))] += 1
    if user is not None:
        tally.users[split].add(user)


def _report(tally: Tally, read_stats: dict, config: PrepareConfig) -> dict:
    report = {"input": tally.report["input"]}
    if config.skip_bad_records:
        report["skipped/bad_record"] = read_stats.get("skipped", 0)
    if "blank" in read_stats:  # a serving log: blank prompts are skipped whatever the options
        report["dropped/blank"] = read_stats["blank"]
    for key in ("dropped/too_long", "dropped/prefix_duplicate", "dropped/over_user_cap"):
        report[key] = tally.report[key]
    for kind in PII_KINDS:
        report[f"pii/{kind}"] = tally.report[f"pii/{kind}"] if config.scrub_pii else 0
    for split in SPLITS:
        report[f"split/{split}"] = tally.report[f"split/{split}"]
    for split in SPLITS:
        report[f"users/{split}"] = len(tally.users[split])
    return report


def render_stats(tally: Tally, report: dict, source, config: PrepareConfig) -> str:
    kept = sum(report[f"split/{s}"] for s in SPLITS)
    lines = [f"# Prompt data from `{source}`", "",
             f"{report['input']} prompts read; {kept} kept after dropping {report['dropped/too_long']} longer than "
             f"{config.max_prompt_chars or 'no limit of'} characters, {report['dropped/prefix_duplicate']} "
             f"that share their first {config.prefix_chars} characters with an earlier prompt and "
             f"{report['dropped/over_user_cap']} over the cap of {config.max_per_user or 'no'} per user.", ""]
    tagged = " (categories a prompt lacked were guessed by keyword, categories.py)" if config.tag_categories else ""
    lines += [f"## Use-case categories (the paper's Table 1){tagged}", "", "| use case | prompts | (%) |",
              "|---|---:|---:|"]
    names = sorted(tally.categories, key=lambda c: (-tally.categories[c], c))
    for name in names:
        n = tally.categories[name]
        lines.append(f"| {name} | {n} | {100 * n / max(kept, 1):.1f}% |")
    unused = [c for c in CATEGORIES if c not in tally.categories]
    if unused:
        lines += ["", f"No prompts in: {', '.join(unused)}."]
    lines += ["", "## Data set sizes in prompts (the paper's Table 6)", "", "| split | source | size |", "|---|---|---:|"]
    for (split, src), n in sorted(tally.sizes.items(), key=lambda kv: (SPLITS.index(kv[0][0]), kv[0][1])):
        lines.append(f"| {split} | {src} | {n:,} |")
    lines += ["", "## Users per split", "", "| split | users | prompts |", "|---|---:|---:|"]
    lines += [f"| {s} | {report[f'users/{s}']} | {report[f'split/{s}']} |" for s in SPLITS]
    lines += ["", "## Personal information masked", "", "| kind | found |", "|---|---:|"]
    lines += [f"| {kind} | {report[f'pii/{kind}']} |" for kind in PII_KINDS]
    return "\n".join(lines) + "\n"
