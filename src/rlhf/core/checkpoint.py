"""Resumable checkpoints and the final model, written atomically.

A checkpoint is a folder `checkpoints/step-000123/` holding every trained module's
weights (safetensors), the optimizer and scheduler state, each process's RNG
state and `state.json` (step, epoch, position in the epoch, metrics history
needed to finish). It is written to a temporary folder and renamed into place,
so a SIGKILL at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from rlhf.core.fsdp import (
    full_optimizer_state, full_state_dict, is_sharded, load_full_optimizer_state, load_full_state_dict, optimizer_owner,
)
from rlhf.core.io import atomic_replace_dir, atomic_write_json
from rlhf.core.models import unwrap_for_save


def _ckpt_dir(out: Path) -> Path:
    return Path(out) / "checkpoints"


def latest_checkpoint(out: str | Path) -> Path | None:
    """The newest complete checkpoint (one whose state.json exists), or None."""
    root = _ckpt_dir(Path(out))
    if not root.exists():
        return None
    done = sorted(p for p in root.glob("step-*") if (p / "state.json").exists())
    return done[-1] if done else None


def _rng_state() -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            state[f"cuda{i}"] = s
    return state


def save_checkpoint(
    out: str | Path, step: int, modules: dict, optimizers: dict, state: dict, accelerator, keep: int = 2
) -> Path:
    """Write checkpoint `step` for all processes; returns its folder.

    modules: name -> nn.Module (unwrapped); optimizers: name -> optimizer or scheduler. A module sharded by
    core/fsdp.py is gathered whole first (every process takes part), and so is the optimizer of its weights:
    the files are the same as without FSDP."""
    root = _ckpt_dir(Path(out))
    final = root / f"step-{step:06d}"
    tmp = root / f".tmp-step-{step:06d}"
    if accelerator.is_main_process:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    rank = accelerator.process_index
    save_file(_rng_state(), str(tmp / f"rng_{rank}.safetensors"))
    (tmp / f"rng_{rank}.json").write_text(json.dumps({"python": repr(random.getstate())}))
    sharded = optimizer_owner(modules)
    gathered = {name: full_state_dict(m) for name, m in modules.items() if is_sharded(m)}
    opt_states = {name: full_optimizer_state(sharded, getattr(opt, "optimizer", opt)) if sharded is not None and hasattr(opt, "param_groups")
                  else opt.state_dict() for name, opt in optimizers.items()}
    if accelerator.is_main_process:
        for name, module in modules.items():
            if name in gathered:
                save_file(gathered[name], str(tmp / f"{name}.safetensors"))
            else:
                save_model(module, str(tmp / f"{name}.safetensors"))
        for name, opt_state in opt_states.items():  # not `state`: that is the caller's, written below
            torch.save(opt_state, tmp / f"{name}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_json(tmp / "state.json", {"step": step, **state})  # last: marks the folder complete
        atomic_replace_dir(tmp, final)
        for old in sorted(p for p in root.glob("step-*") if p != final)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(path: str | Path, modules: dict, optimizers: dict, accelerator) -> dict:
    """Restore modules, optimizers and this process's RNG; returns state.json."""
    path = Path(path)
    sharded = optimizer_owner(modules)
    for name, module in modules.items():
        if is_sharded(module):  # every process reads the whole file and keeps its shard
            load_full_state_dict(module, load_file(str(path / f"{name}.safetensors")))
            continue
        missing, unexpected = load_model(module, str(path / f"{name}.safetensors"), strict=False)
        if unexpected:
            raise RuntimeError(f"{path}/{name}.safetensors has weights the model lacks: {unexpected[:5]}")
    for name, opt in optimizers.items():
        state = torch.load(path / f"{name}.pt", weights_only=True)
        if sharded is not None and hasattr(opt, "param_groups"):
            load_full_optimizer_state(sharded, getattr(opt, "optimizer", opt), state)
        else:
            opt.load_state_dict(state)
    rank = accelerator.process_index
    rng_file = path / f"rng_{rank}.safetensors"
    if rng_file.exists():
        rng = load_file(str(rng_file))
        torch.set_rng_state(rng["torch"])
        for key, value in rng.items():
            if key.startswith("cuda") and torch.cuda.is_available():
                torch.cuda.set_rng_state(value, int(key[4:]))
        import ast

        random.setstate(ast.literal_eval(json.loads((path / f"rng_{rank}.json").read_text())["python"]))
    return json.loads((path / "state.json").read_text())


def save_final(model, tokenizer, out: Path) -> None:
    """out/final/: a plain transformers folder (LoRA merged), written atomically."""
    tmp = Path(out) / ".tmp-final"
    unwrap_for_save(model).save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    atomic_replace_dir(tmp, Path(out) / "final")
