"""Sampling with vLLM in this process (colocated), for PPO rollouts and `rlhf eval`.

The engine runs in the training process (VLLM_ENABLE_V1_MULTIPROCESSING=0), so the
policy's weights reach it after each update as tensors handed over in memory
(`reload_weights`), never through a file: what TRL calls colocate mode. vLLM only picks
the tokens. Every log-probability the PPO math uses is recomputed by the training model
(`ppo.rollout.score_episodes`), as TRL and OpenRLHF do, so a kernel that rounds a little
differently in vLLM moves which tokens are drawn, never the ratios or the KL.

Sampling settings match `core.generate.sample`: temperature (0 is greedy), top_p, at most
max_new_tokens, stop at EOS (kept), and one seed per episode, a function of (seed, global
episode index), so a resumed run draws what the uninterrupted one did. The draws are
vLLM's own: with the same seed an episode's tokens differ from our sampler's, except
greedy, where the two agree token for token (tests/engines/test_vllm.py).

vLLM is an optional install (docs/engines.md): this module imports it only when an engine
is built, so the package and its configs load without it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

import torch

from rlhf.config import require
from rlhf.core.generate import left_pad, response_mask_from

BACKENDS = ("native", "vllm")


@dataclass
class VLLMConfig:
    """The vLLM engine of generation_backend=vllm (docs/engines.md)."""

    gpu_memory_utilization: float = 0.3
    """Share of GPU memory vLLM may take for weights and KV cache. Colocated with training, so it must leave
    room for the models being trained, their gradients and the optimizer (TRL's colocate default is 0.3)."""
    tensor_parallel_size: int = 1
    """GPUs one engine spans. With several processes, each group of this many ranks shares one engine
    (vLLM's external_launcher); 1 gives every rank its own engine for its own episodes."""
    kv_cache_gb: float = 0.0
    """KV cache size in GiB; 0 leaves it to vLLM (gpu_memory_utilization on a GPU, 4 GiB on a CPU)."""
    enforce_eager: bool = False
    """Skip CUDA graph capture: faster start, slower decoding. Always on on a CPU, where there are no graphs."""
    dtype: str = "auto"
    """Weights and activations in vLLM: auto (the model's dtype), float32, bfloat16 or float16."""

    def validate(self) -> None:
        require(0 < self.gpu_memory_utilization <= 1, "vllm.gpu_memory_utilization must be in (0, 1]")
        require(self.tensor_parallel_size >= 1, "vllm.tensor_parallel_size must be >= 1")
        require(self.kv_cache_gb >= 0, "vllm.kv_cache_gb must be >= 0 (0: vLLM's default)")
        require(self.dtype in ("auto", "float32", "bfloat16", "float16"),
                f"vllm.dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")


def check_backend(backend: str) -> None:
    """Refuse an unknown backend, and vllm when it is not installed, at config time."""
    require(backend in BACKENDS, f"generation_backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "vllm":
        import importlib.util

        require(importlib.util.find_spec("vllm") is not None,
                "generation_backend=vllm needs vLLM: `pip install vllm` on a GPU machine, or "
                "`bash scripts/setup.sh --vllm` for the CPU build in .venv-vllm/ (docs/engines.md)")


def episode_seed(seed: int, episode_id: int) -> int:
    """vLLM's per-request seed for one episode: a function of (seed, global episode index) only."""
    return (seed * 1_000_000_007 + episode_id) % (2**63 - 1)


class VLLMSampler:
    """One vLLM engine in this process, loaded from `model_path` and then kept in step with a
    training model through `load_weights`."""

    def __init__(self, model_path: str, config: VLLMConfig, max_model_len: int, seed: int = 0):
        # In-process engine core: the weight push is a function call on the same tensors, and no
        # engine process is spawned (so no __main__ re-import and no pickling of the model).
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        from vllm import LLM

        kwargs = {}
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # Launched by accelerate/torchrun: vLLM joins the existing ranks instead of starting its own.
            kwargs["distributed_executor_backend"] = "external_launcher"
            seed += int(os.environ.get("RANK", "0")) // config.tensor_parallel_size
        if config.kv_cache_gb > 0:
            kwargs["kv_cache_memory_bytes"] = int(config.kv_cache_gb * 2**30)
        self.llm = LLM(
            model=model_path, dtype=config.dtype, seed=seed, max_model_len=max_model_len,
            tensor_parallel_size=config.tensor_parallel_size, gpu_memory_utilization=config.gpu_memory_utilization,
            enforce_eager=config.enforce_eager or not torch.cuda.is_available(),
            generation_config="vllm",  # our sampling settings only: no defaults from the model's generation_config.json
            enable_prefix_caching=True, **kwargs,
        )

    def load_weights(self, model: torch.nn.Module) -> None:
        """Copy `model`'s current weights (LoRA merged in) into the engine, in memory."""
        with checkpoint_weights(model) as weights:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        # Cached prompt prefixes hold keys and values of the old weights.
        self.llm.reset_prefix_cache()

    @torch.no_grad()
    def sample(self, prompts: list[list[int]], seeds: list[int], max_new_tokens: int, temperature: float, top_p: float,
               eos_id: int, pad_id: int, device: torch.device | str = "cpu"
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The layout of `core.generate.sample`: prompt_ids, prompt_mask (B, P) left-padded,
        response_ids, response_mask (B, R = max_new_tokens) right-padded with pad_id."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = [SamplingParams(temperature=temperature, top_p=top_p, max_tokens=max_new_tokens, seed=s,
                                 stop_token_ids=[eos_id], detokenize=False) for s in seeds]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        response_ids = torch.full((len(prompts), max_new_tokens), pad_id, dtype=torch.long)  # (B, R)
        for b, out in enumerate(outputs):
            tokens = list(out.outputs[0].token_ids)[:max_new_tokens]  # EOS, when drawn, is the last one
            response_ids[b, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        prompt_ids, prompt_mask = left_pad(prompts, pad_id)  # (B, P)
        response_mask = response_mask_from(response_ids, eos_id, pad_id)
        return tuple(x.to(device) for x in (prompt_ids, prompt_mask, response_ids, response_mask))

    def close(self) -> None:
        """Free the engine (its KV cache) before another is built in this process."""
        import gc

        if self.llm is None:
            return
        with contextlib.suppress(Exception):
            self.llm.llm_engine.engine_core.shutdown()
        self.llm = None
        gc.collect()


@contextlib.contextmanager
def checkpoint_weights(model: torch.nn.Module) -> Iterator[Iterator[tuple[str, torch.Tensor]]]:
    """The model's weights as (name, tensor) under the names of its saved checkpoint, which is what
    vLLM's loaders read. For a peft model each adapted weight is sent as base + its LoRA delta, computed
    aside: merging into the model and unmerging would leave the base weights off by float rounding
    after every rollout."""
    if not hasattr(model, "peft_config"):
        yield ((name, tensor.detach()) for name, tensor in model.state_dict().items())
        return
    deltas = {f"{name}.base_layer.weight": module.get_delta_weight(module.active_adapters[0])
              for name, module in model.named_modules() if hasattr(module, "get_delta_weight") and module.merged is False
              and module.active_adapters and module.active_adapters[0] in getattr(module, "lora_A", {})}
    with torch.no_grad():
        yield ((checkpoint_name(name), tensor.detach() + deltas[name] if name in deltas else tensor.detach())
               for name, tensor in model.state_dict().items() if "lora_" not in name)


def checkpoint_name(peft_name: str) -> str:
    """base_model.model.transformer.h.0.attn.c_attn.base_layer.weight -> transformer.h.0.attn.c_attn.weight"""
    return peft_name.removeprefix("base_model.model.").replace(".base_layer.", ".")
