"""Small builders shared by the label tests."""

from __future__ import annotations

import json
import re
from pathlib import Path

from rlhf.label import imports


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def add_prompts(db, tmp_path: Path, prompts: list, overlap: int | None = None, name: str = "prompts.jsonl"):
    records = [{"id": f"p-{i}", "prompt": p} for i, p in enumerate(prompts)]
    return imports.import_prompts(db, write_jsonl(tmp_path / name, records), overlap=overlap)


def add_rankings(db, tmp_path: Path, n_prompts: int = 1, k: int = 4, overlap: int | None = None,
                 prompt: str = "Say hello", responses: list[str] | None = None, name: str = "samples.jsonl"):
    records = []
    for p in range(n_prompts):
        for j in range(k):
            text = responses[j] if responses else f"response {j} to prompt {p}"
            records.append({"prompt_id": f"s-{p}", "prompt": f"{prompt} #{p}", "model": f"m{j}", "response": text})
    return imports.import_samples(db, write_jsonl(tmp_path / name, records), k=k, overlap=overlap)


def task_id(response) -> int:
    """The assignment id from the redirect of /next."""
    assert response.status_code == 303, response.text
    match = re.fullmatch(r"/task/(\d+)", response.headers["location"])
    assert match, response.headers["location"]
    return int(match.group(1))


def form_fields(html: str) -> dict[str, str]:
    """csrf_token and token of the answer form on a task page."""
    out = {}
    for name in ("csrf_token", "token"):
        match = re.search(rf'name="{name}" value="([^"]+)"', html)
        if match:
            out[name] = match.group(1)
    return out


def shown_indices(html: str) -> list[int]:
    """Response indices in the order the ranking page shows them."""
    return [int(x) for x in re.findall(r'<li class="card" tabindex="0" data-index="(\d+)"', html)]


def ranking_form(k: int, order: list[int], likert: list[int] | None = None, flags: dict | None = None,
                 ties: set[int] = frozenset()) -> dict:
    """Fields ranking `order` best first; an index in `ties` shares the rank of the one before it."""
    fields, rank = {}, 0
    for pos, i in enumerate(order):
        if i not in ties or pos == 0:
            rank = pos + 1
        fields[f"rank_{i}"] = str(rank)
    for i in range(k):
        fields[f"likert_{i}"] = str((likert or [4] * k)[i])
        if (flags or {}).get(i):
            fields[f"flag_{i}"] = list(flags[i])
    return fields
