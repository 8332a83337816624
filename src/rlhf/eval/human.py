"""Human evaluation through the labeling app (paper section 4.1, Figures 1, 3 and 4).

`rlhf eval label_db=...` writes one blinded comparison task per prompt and model: the
model's response and the baseline's, in a random order per task, under an opaque task id.
The app never holds a model name (the key that unblinds a task stays in the eval folder,
human_tasks.jsonl), and shows the two responses in its own random order per labeler.
A share `label_overlap` of the tasks goes to two labelers, for inter-labeler agreement.

`rlhf eval report --labels export.jsonl` reads the app's comparisons export back:
- win rate of each model against the baseline: 1 when a labeler ranks the model's response
  above the baseline's, 0.5 for a tie, 0 below; a prompt's judgments are averaged, and the
  95% interval is a bootstrap over prompts (a prompt judged twice is still one sample);
- mean Likert score (1-7) of each model's responses;
- rate of each metadata flag (Figure 4: attempts the correct instruction = not
  fails_instruction, follows explicit constraints, hallucination, language appropriate for a
  customer assistant = not inappropriate_for_assistant);
- agreement between the two labelers of an overlapped task, as `rlhf label stats` counts it:
  both preferred one response and it was the same one (a tie on either side is left out).
Responses that were identical to the baseline's were never sent: they count as ties in the
win rate and are absent from Likert and flags.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from pathlib import Path

from rlhf.data import FLAGS
from rlhf.data.io import iter_raw
from rlhf.data.records import FieldError, RecordError, normalize_comparison
from rlhf.eval.winrate import bootstrap_interval

KEY_FILE = "human_tasks.jsonl"
# Figure 4 of the paper, each as (label, flag, True when the flag set means the good outcome is absent).
FIGURE4 = (
    ("attempts correct instruction", "fails_instruction", True),
    ("follows explicit constraints", "follows_constraints", False),
    ("hallucinations", "hallucination", False),
    ("uses language appropriate for customer assistant", "inappropriate_for_assistant", True),
)


def prompt_id(record: dict, i: int) -> str:
    """A prompts record's id (formats.md), or p-<i> from its position when it has none."""
    return str(record.get("id", record.get("prompt_id", f"p-{i:06d}")))


def task_id(salt: str, prompt_id: str, model: str, responses: list[str]) -> str:
    """Opaque to labelers; new responses (another run into the same folder) give new ids."""
    text = json.dumps([salt, prompt_id, model, responses], ensure_ascii=False)
    return "eval-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def comparison_tasks(records: list[dict], names: list[str], base_name: str, texts: dict[str, list[str]],
                     overlap: float, seed: int, salt: str) -> list[dict]:
    """The key: one row per (prompt, model other than the baseline), responses in a random order.
    `labelers` is 2 for a random `overlap` share of the tasks, 1 for the rest, 0 for identical
    responses (a tie, not sent)."""
    rng = random.Random(seed)
    rows = []
    for name in names:
        if name == base_name:
            continue
        for i, record in enumerate(records):
            pid = prompt_id(record, i)
            pair = [(name, texts[name][i]), (base_name, texts[base_name][i])]
            rng.shuffle(pair)  # which side the model is on says nothing to anyone who sees the item
            models, responses = [m for m, _ in pair], [r for _, r in pair]
            rows.append({"task": task_id(salt, pid, name, responses), "prompt_id": pid, "prompt_index": i,
                         "prompt": record["prompt"], "model": name, "baseline": base_name, "models": models,
                         "responses": responses, "labelers": 0 if responses[0] == responses[1] else 1})
    sent = [row for row in rows if row["labelers"]]
    for row in rng.sample(sent, round(overlap * len(sent))):
        row["labelers"] = 2
    return rows


def send_tasks(db_url: str, key: list[dict], folder: Path) -> str:
    """Import the key's tasks into the app as K = 2 ranking tasks (prompt_id = the task id, no
    model names); returns what the importer reported. Importing again adds nothing."""
    from rlhf.core.io import atomic_write_jsonl

    try:
        from rlhf.label import imports
        from rlhf.label.db import Database
    except ImportError as e:
        raise RuntimeError(f"label_db needs the labeling app's packages: pip install -e .[label] ({e})") from None
    reports = []
    db = Database(db_url)
    try:
        for labelers in (1, 2):
            rows = [{"prompt_id": row["task"], "prompt": row["prompt"], "response": r}
                    for row in key if row["labelers"] == labelers for r in row["responses"]]
            if rows:
                path = folder / f"human_tasks_overlap{labelers}.jsonl"
                atomic_write_jsonl(path, rows)
                reports.append(f"{labelers} labeler(s): {imports.import_samples(db, path, k=2, overlap=labelers)}")
    finally:
        db.dispose()
    return "; ".join(reports) or "no tasks (every response is identical to the baseline's)"


def read_key(folder: Path) -> list[dict]:
    path = folder / KEY_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no human evaluation tasks here; run `rlhf eval ... label_db=URL` into "
                                f"{folder} first")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def judgments(key: list[dict], labels_path: str | Path) -> tuple[list[dict], int]:
    """Each labeler's answer on this evaluation's tasks, from the labeling app's comparisons
    export: (judgments, records of other tasks, ignored). A record that claims one of our task
    ids with other responses stops with its file, line and field."""
    by_task = {row["task"]: row for row in key}
    found, other = [], 0
    for line, raw in iter_raw(labels_path):
        try:
            if isinstance(raw, RecordError):
                raise raw
            if not isinstance(raw, dict):
                raise RecordError(str(labels_path), line, "<record>", "each record must be a JSON object")
            record = normalize_comparison(raw)
        except FieldError as e:
            raise RecordError(str(labels_path), line, e.field, e.message) from None
        row = by_task.get(str(record.get("prompt_id")))
        if row is None:
            other += 1
            continue
        if record["responses"] != row["responses"]:
            raise RecordError(str(labels_path), line, "responses", f"differ from those of task {row['task']} in "
                              f"{KEY_FILE}: this export is not of the tasks this evaluation wrote")
        found.append(judgment(row, record))
    return found, other


def judgment(row: dict, record: dict) -> dict:
    """One labeler's answer, seen from the model's side of the pair."""
    m, b = row["models"].index(row["model"]), row["models"].index(row["baseline"])
    rank = {i: g for g, group in enumerate(record["ranking"]) for i in group}  # lower is better
    outcome = 1.0 if rank[m] < rank[b] else 0.0 if rank[m] > rank[b] else 0.5
    likert = record.get("likert") or [None, None]
    flags = record.get("flags") or [{}, {}]
    return {"task": row["task"], "prompt_index": row["prompt_index"], "model": row["model"],
            "baseline": row["baseline"], "labeler": record.get("labeler_id"), "outcome": outcome,
            "likert": {row["model"]: likert[m], row["baseline"]: likert[b]},
            "flags": {row["model"]: flags[m], row["baseline"]: flags[b]}}


def _by_prompt_mean(pairs: list[tuple[int, float]]) -> list[float]:
    """Values grouped by prompt and averaged: the bootstrap resamples prompts, not judgments."""
    groups = defaultdict(list)
    for prompt, value in pairs:
        groups[prompt].append(value)
    return [sum(v) / len(v) for _, v in sorted(groups.items())]


def _with_interval(metrics: dict, what: str, rest: str, values: list[float], num_bootstrap: int, seed: int) -> None:
    """human/<what>/<rest> = the mean of `values`, and its 95% bootstrap interval in human/<what>_low|_high/<rest>."""
    if not values:
        return
    metrics[f"human/{what}/{rest}"] = sum(values) / len(values)
    low, high = bootstrap_interval(values, num_bootstrap, seed)
    metrics[f"human/{what}_low/{rest}"], metrics[f"human/{what}_high/{rest}"] = low, high


def human_metrics(key: list[dict], found: list[dict], names: list[str], base_name: str, num_bootstrap: int,
                  seed: int) -> dict[str, float]:
    """human/* metrics (docs/metrics.md) from the key and the judgments."""
    metrics: dict[str, float] = {}
    for name in names:
        if name == base_name:
            continue
        tasks = [row for row in key if row["model"] == name]
        mine = [j for j in found if j["model"] == name]
        ties = [(row["prompt_index"], 0.5) for row in tasks if not row["labelers"]]
        outcomes = [(j["prompt_index"], j["outcome"]) for j in mine] + ties
        metrics[f"human/tasks/{name}"] = float(sum(1 for row in tasks if row["labelers"]))
        metrics[f"human/judgments/{name}"] = float(len(mine))
        metrics[f"human/identical/{name}"] = float(len(ties))
        _with_interval(metrics, "winrate", name, _by_prompt_mean(outcomes), num_bootstrap, seed)
    for name in names:  # the baseline too: its responses are rated in every task
        rated = [(j["prompt_index"], j) for j in found if name in j["likert"]]
        scores = [(p, float(j["likert"][name])) for p, j in rated if j["likert"][name] is not None]
        _with_interval(metrics, "likert", name, _by_prompt_mean(scores), num_bootstrap, seed)
        for flag in FLAGS:
            values = [(p, float(bool(j["flags"][name].get(flag)))) for p, j in rated]
            _with_interval(metrics, "flag", f"{flag}/{name}", _by_prompt_mean(values), num_bootstrap, seed)
    metrics.update(agreement(found, num_bootstrap, seed))
    metrics["human/labelers"] = float(len({j["labeler"] for j in found}))
    return metrics


def agreement(found: list[dict], num_bootstrap: int, seed: int) -> dict[str, float]:
    """Share of overlapped tasks' labeler pairs who preferred the same response (ties left out)."""
    by_task = defaultdict(list)
    for j in found:
        by_task[j["task"]].append(j["outcome"])
    agree = []
    for outcomes in by_task.values():
        for i in range(len(outcomes)):
            for k in range(i + 1, len(outcomes)):
                x, y = outcomes[i], outcomes[k]
                if x != 0.5 and y != 0.5:
                    agree.append(float(x == y))
    out = {"human/agreement_pairs": float(len(agree))}
    if agree:
        out["human/agreement"] = sum(agree) / len(agree)
        out["human/agreement_low"], out["human/agreement_high"] = bootstrap_interval(agree, num_bootstrap, seed)
    return out
