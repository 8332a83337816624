"""FSDP applied by rlhf itself: torch's `fully_shard` (FSDP2), over gloo on CPUs and NCCL on GPUs.

`accelerate launch --use_fsdp ...` is how a user asks for it, but accelerate 1.15 cannot shard on a
CPU: with ACCELERATE_USE_CPU=1 its FSDP1 plugin stops with "There are currently no available
devices found" and `--fsdp_version 2` quietly runs plain DDP, every process holding every weight.
torch's fully_shard itself works on CPU tensors over gloo, so rlhf reads the launcher's request,
lets accelerate set up a plain multi-process run, and shards the model itself: each transformer
block (the model's `_no_split_modules`) is one unit, the rest (embeddings, final norm, heads) the
root unit, parameters and gradients and optimizer state split across processes (ZeRO-3), gathered
a unit at a time for its forward and backward. The same code runs on GPUs, so the path tested here
on two CPU processes is the one a GPU user runs. accelerate's other FSDP flags (wrap policy, offload,
its mixed-precision policy) are not read; `precision=bf16` autocasts as without FSDP.

What needs every process to agree: a forward of a sharded unit gathers its weights from all
processes, so every process must run the same number of forwards. Work that only one process does,
or whose count differs (evaluation, PPO's sampling), runs inside `unsharded(...)`, which gathers the
whole model once and lets each process run what it needs; saving final/ gathers a `plain_copy`. FSDP
gathers a root unit's weights in its forward only: call the sharded module itself (PPO's
PolicyAndValue and Reference), or name the method used in its place (`shard(..., forward_methods=)`).
"""

from __future__ import annotations

import contextlib
import logging
import os

import torch

log = logging.getLogger("rlhf.fsdp")
_FLAG = "RLHF_FSDP"


def take_launcher_request() -> bool:
    """True when launched with --use_fsdp (ACCELERATE_USE_FSDP). Called before accelerate's Accelerator is
    built: the request is moved to RLHF_FSDP so accelerate sets up plain DDP-style processes and rlhf shards."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true"):
        os.environ["ACCELERATE_USE_FSDP"] = "false"
        os.environ[_FLAG] = "1"
    return os.environ.get(_FLAG) == "1"


def fsdp_enabled(accelerator) -> bool:
    return os.environ.get(_FLAG) == "1" and accelerator.num_processes > 1


def shard(module: torch.nn.Module, accelerator, forward_methods: tuple[str, ...] = ()) -> torch.nn.Module:
    """fully_shard every transformer block inside `module`, then `module` itself. Returns it, its parameters
    now DTensors: build the optimizer after this. FSDP gathers the root unit's weights in `module`'s forward;
    `forward_methods` names other methods callers use in its place (the reward model's `values`)."""
    if any(hasattr(m, "peft_config") for m in module.modules()):
        raise ValueError("LoRA with FSDP is not supported: the adapters are small enough for DDP "
                         "(launch without --use_fsdp), or train all weights with FSDP")
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    mesh = init_device_mesh(accelerator.device.type, (accelerator.num_processes,))
    block_names = {name for m in module.modules() for name in (getattr(m, "_no_split_modules", None) or [])}
    blocks = [m for m in module.modules() if type(m).__name__ in block_names]
    if not blocks:
        raise ValueError(f"FSDP: found no transformer blocks to shard in {type(module).__name__} "
                         "(the model's _no_split_modules names none)")
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(module, mesh=mesh)
    for name in forward_methods:
        register_fsdp_forward_method(module, name)
    log.info("FSDP: %s sharded over %d processes (%d %s blocks + the root), by rlhf (core/fsdp.py)",
             type(module).__name__, accelerator.num_processes, len(blocks), type(blocks[0]).__name__)
    return module


def is_sharded(module: torch.nn.Module | None) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return module is not None and any(isinstance(m, FSDPModule) for m in module.modules())


@contextlib.contextmanager
def unsharded(module: torch.nn.Module, part: torch.nn.Module | None = None):
    """Every process holds the whole `module` inside the block (a collective on entry), so each may run any
    number of forwards, or none; sharded again on exit. With `part` (a submodule), only the root unit and the
    units inside `part` are gathered: enough to run `part` directly (PPO samples from the policy of its joint
    policy-and-value module). A no-op for a module that is not sharded."""
    from torch.distributed.fsdp import FSDPModule

    inside = set((part or module).modules())
    units = [m for m in module.modules() if isinstance(m, FSDPModule) and (m is module or m in inside)]
    if isinstance(module, FSDPModule):
        # FSDP takes the first unit to run a forward for the root. Run directly, a block inside would claim it,
        # and the next forward of `module` fails ("requires running forward through the root module first").
        module._get_fsdp_state()._lazy_init()
    for unit in units:
        unit.unshard()
        unit.set_reshard_after_forward(False)
    try:
        yield module
    finally:
        for unit in units:
            unit.reshard()
            unit.set_reshard_after_forward(True)


def full_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole state dict as plain CPU tensors, on every process (a collective)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    # cpu_offload would leave every process but the first with an empty dict.
    state = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True))
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}  # tied weights: two tensors


def load_full_state_dict(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(module, state, options=StateDictOptions(full_state_dict=True, strict=False))


def optimizer_owner(modules: dict[str, torch.nn.Module]) -> torch.nn.Module | None:
    """The module whose parameter names key the sharded optimizer state of a checkpoint of `modules`: the one
    sharded module (SFT, RM), or the sharded ones together under their names (PPO's policy and value model,
    trained by one optimizer); None when nothing is sharded."""
    sharded = {name: m for name, m in modules.items() if is_sharded(m)}
    if len(sharded) <= 1:
        return next(iter(sharded.values()), None)
    return torch.nn.ModuleDict(sharded)


def full_optimizer_state(module: torch.nn.Module, optimizer) -> dict:
    """The whole optimizer state (keyed by parameter name) on the first process; the others get an empty dict."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(module, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_optimizer_state(module: torch.nn.Module, optimizer, state: dict) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(module, optimizer, state, options=StateDictOptions(full_state_dict=True))


def plain_copy(module: torch.nn.Module, build) -> torch.nn.Module:
    """A new, unsharded `build()` holding the sharded `module`'s current weights, on every process (a
    collective). For the work one process does alone: writing final/, SFT's reward selection, the RM's
    normalisation. Costs one more copy of the weights while it lives."""
    state = full_state_dict(module)
    copy = build()
    copy.load_state_dict(state)
    return copy
