"""Is the judge the reward model a policy was trained against?

A PPO policy is optimised to please its reward model, so that model's verdict on the
policy measures the optimisation, not the policy's quality: docs/demo.md shows the
reward model's score rising while held-out labelers' preference falls (over-optimisation,
Gao et al. 2022). `rlhf eval` checks every model it evaluates against its judge: same
folder, or same weights (the hash `rlhf ppo` records in final/trained_against.json),
and says so in the report's first lines and in `eval/judge_is_training_rm`.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from rlhf.core.io import TRAINED_AGAINST, weights_sha256
from rlhf.core.reward import reward_model_paths


def trained_against(model_path: str | Path) -> dict | None:
    """{"reward_model": path, "reward_model_sha256": hex or None, "reward_fn": str} of the PPO run that
    wrote `model_path` (an ensemble: its members' paths and hashes, comma-separated), or None when it is not a PPO
    policy we can trace. Runs from before the hash was recorded still have the path in the run folder's
    config.yaml (runs/ppo/final -> runs/ppo)."""
    folder = Path(model_path)
    record = folder / TRAINED_AGAINST
    if record.exists():
        return json.loads(record.read_text())
    config = folder.parent / "config.yaml"
    if folder.name == "final" and config.exists():
        saved = yaml.safe_load(config.read_text()) or {}
        if isinstance(saved, dict) and saved.get("policy") and saved.get("reward_model"):  # a PPO config
            path = Path(saved["reward_model"])
            if not path.is_absolute():  # relative to where that run was started: unknown, guess ours
                path = Path.cwd() / path
            return {"reward_model": str(path.resolve()), "reward_model_sha256": None,
                    "reward_fn": saved.get("reward_fn", "")}
    return None


def judged_by_its_reward_model(judge_folder: str, model_path: str, hashes: dict[str, str]) -> str:
    """How the judge at `judge_folder` is the reward `model_path` was trained against: "same path",
    "same weights", or "" when it is not (or the model is no PPO policy). `hashes` caches folder hashes.
    Either side may be an ensemble (folders separated by commas): one member in common is enough, as that
    member's verdict is part of what the policy maximised."""
    record = trained_against(model_path)
    if record is None or record.get("reward_fn"):  # a reward_fn policy never saw its RM's scores
        return ""
    judges = reward_model_paths(judge_folder)
    trained = {Path(p).resolve() for p in reward_model_paths(record["reward_model"])}
    if any(Path(j).resolve() in trained for j in judges):
        return "same path"
    if record.get("reward_model_sha256"):
        for j in judges:
            if j not in hashes:
                hashes[j] = weights_sha256(j)
        if any(hashes[j] in record["reward_model_sha256"].split(",") for j in judges):
            return "same weights"
    return ""


def training_rm_matches(judge_folder: str, names: list[str], paths: list[str]) -> dict[str, str]:
    """{model name: "same path" | "same weights"} for each model trained against the reward model
    at `judge_folder`."""
    hashes: dict[str, str] = {}
    found = {}
    for name, path in zip(names, paths):
        how = judged_by_its_reward_model(judge_folder, path, hashes)
        if how:
            found[name] = how
    return found
