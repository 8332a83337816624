"""Batched sampling from a causal LM with a KV cache: left padding, temperature, top-p,
a maximum response length and stop at EOS. One sampler for every stage (PPO rollouts,
eval, SFT's validation-reward selection).

Prompts are left-padded to (B, P) and responses right-padded to (B, R). Sampling draws
one uniform number per (episode, token) from a generator seeded by the episode's global
index and picks the token by inverse CDF, so an episode's response depends on its own
prompt and the weights only: the same with 1 or 2 processes, in any batch, after a resume.
"""

from __future__ import annotations

import importlib.util
import inspect
from dataclasses import dataclass, field

import torch

from rlhf.config import require
from rlhf.core.ops import pad_rows


BACKENDS = ("native", "vllm")


@dataclass
class VLLMConfig:
    """The vLLM engine of generation_backend=vllm (core/vllm_engine.py, docs/engines.md)."""

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


@dataclass
class GenerationConfig:
    """How responses are sampled: the same keys and meanings in PPO's rollouts and in eval."""

    max_new_tokens: int = 64
    """Maximum response length in tokens; a response also stops at EOS."""
    temperature: float = 1.0
    """Sampling temperature, also applied to every log-prob of the sampled tokens (details checklist)."""
    top_p: float = 1.0
    """Nucleus sampling mass; 1.0 samples the full distribution (PPO's importance ratios assume it)."""
    generation_backend: str = "native"
    """Who samples the responses: native (our KV-cache sampler, faster on CPUs and small models) or vllm (a vLLM
    engine in this process: PPO sends it the policy's weights in memory after each update, eval builds one per
    model; docs/engines.md).
    Log-probs, KL and perplexity are always computed by the model itself, so the math is the same."""
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    """Settings of the vLLM engine when generation_backend=vllm."""

    def validate_generation(self) -> None:
        require(self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        require(self.temperature > 0, f"temperature must be > 0 (the log-probs divide by it), got {self.temperature}")
        require(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}")
        check_backend(self.generation_backend)
        self.vllm.validate()


def check_backend(backend: str) -> None:
    """Refuse an unknown backend, and vllm when it is not installed, at config time."""
    require(backend in BACKENDS, f"generation_backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "vllm":
        require(importlib.util.find_spec("vllm") is not None,
                "generation_backend=vllm needs vLLM: `pip install vllm` on a GPU machine, or "
                "`bash scripts/setup.sh --vllm` for the CPU build in .venv-vllm/ (docs/engines.md)")


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding. (B, T) -> (B, T)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def episode_noise(seed: int, episode_ids: list[int], length: int) -> torch.Tensor:
    """(B, length) uniforms, row b a function of (seed, episode_ids[b]) only."""
    rows = [torch.rand(length, generator=torch.Generator().manual_seed(seed * 1_000_000_007 + e)) for e in episode_ids]
    return torch.stack(rows)  # (B, length)


def pick_tokens(logits: torch.Tensor, u: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Sample one token per row by inverse CDF of softmax(logits / temperature), restricted to
    the top-p nucleus; temperature 0 picks the argmax. logits (B, V), u (B,) uniforms in [0, 1) -> (B,) token ids.

    The one sampler of the package: PPO rollouts, eval, SFT's selection and `rlhf serve` all pick here."""
    if temperature <= 0:  # greedy
        return logits.argmax(-1)
    logits = logits.float()
    # A tiny temperature must tend to greedy, not to NaN: the max comes off before the division
    # (dividing first overflows to inf for a temperature near 1e-38, and inf - inf is NaN), and the
    # temperature stays at 1e-30 or more (1e-300 is 0 in float32: 0 / 0). At 1e-30 every token
    # whose logit is below the max already has probability 0.
    probs = ((logits - logits.amax(-1, keepdim=True)) / max(temperature, 1e-30)).softmax(-1)  # (B, V)
    order = None
    if top_p < 1.0:
        probs, order = probs.sort(-1, descending=True)  # (B, V)
        # The nucleus (Holtzman et al., 2020): the most likely tokens until their mass reaches top_p.
        keep = (probs.cumsum(-1) - probs) < top_p  # (B, V): the mass before the token is still short of top_p
        keep[:, 0] = True  # the top token always stays: a top_p such as 1e-46 is 0 in float32
        probs = probs * keep
    cdf = probs.cumsum(-1)  # (B, V)
    picked = torch.searchsorted(cdf, (u.to(cdf) * cdf[:, -1]).unsqueeze(-1), right=True).clamp(max=cdf.shape[-1] - 1)
    return (order.gather(-1, picked) if order is not None else picked).squeeze(-1)  # (B,)


def kv_cache(model) -> dict:
    """An empty KV cache, as the keyword argument that hands it to every forward of one generation
    (the model fills it in place). Transformers 5 takes a `Cache` object as `cache=`; it deprecated
    `past_key_values=` and removes it in 5.40. Models that predate the rename (older transformers,
    remote code) still take `past_key_values`, so the keyword comes from the model's own signature."""
    from transformers import DynamicCache

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # through a PEFT wrapper
    # The class's forward: accelerate may wrap the instance's in a (*args, **kwargs) function.
    keyword = "cache" if "cache" in inspect.signature(type(base).forward).parameters else "past_key_values"
    return {keyword: DynamicCache(config=base.config)}


@torch.no_grad()
def sample(model, prompts: list[list[int]], noise: torch.Tensor, temperature: float, top_p: float, eos_id: int,
           pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample a response for each prompt with a KV cache: one prefill, then one token a step,
    stopping at EOS (kept) or after noise.shape[1] tokens.

    Returns prompt_ids, prompt_mask (B, P) and response_ids, response_mask (B, R)."""
    device = next(model.parameters()).device
    B, R = noise.shape
    prompt_ids, prompt_mask = (x.to(device) for x in pad_rows(prompts, pad_id, left=True))  # (B, P)
    response_ids = torch.full((B, R), pad_id, dtype=torch.long, device=device)  # (B, R)
    done = torch.zeros(B, dtype=torch.bool, device=device)  # (B,)
    mask = prompt_mask
    positions = positions_from_mask(mask)
    cache = kv_cache(model)
    out = model(input_ids=prompt_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
                **cache)
    noise = noise.to(device)
    for t in range(R):
        token = pick_tokens(out.logits[:, -1], noise[:, t], temperature, top_p)  # (B,)
        token = torch.where(done, pad_id, token)
        response_ids[:, t] = token
        done = done | (token == eos_id)
        if t == R - 1 or bool(done.all()):
            break
        mask = torch.cat([mask, (~done).long().unsqueeze(-1)], -1)  # finished rows attend to nothing new
        positions = positions[:, -1:] + 1  # (B, 1)
        out = model(input_ids=token.unsqueeze(-1), attention_mask=mask, position_ids=positions, use_cache=True,
                    **cache)
    return prompt_ids, prompt_mask, response_ids, response_mask_from(response_ids, eos_id, pad_id)


def decode_responses(tokenizer, response_ids: torch.Tensor, response_mask: torch.Tensor) -> list[str]:
    """Each row's response tokens (mask 1) as text, special tokens dropped. (B, R) x2 -> B strings."""
    return [tokenizer.decode(r[m.bool()].tolist(), skip_special_tokens=True)
            for r, m in zip(response_ids.cpu(), response_mask.cpu())]


def response_mask_from(response_ids: torch.Tensor, eos_id: int, pad_id: int) -> torch.Tensor:
    """True on tokens up to and including the first EOS. (B, R) -> (B, R) long.

    Built from EOS positions, not from pad ids: a model whose pad token is its EOS still
    keeps its real EOS (details checklist: pad token is not EOS)."""
    is_eos = response_ids == eos_id  # (B, R)
    after_eos = (is_eos.long().cumsum(-1) - is_eos.long()) > 0  # strictly after the first EOS
    return (~after_eos).long()


def generate(
    model, tokenizer, prompts: list[list[int]], max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0,
    do_sample: bool = True, micro_batch_size: int = 64, seed: int = 0,
) -> list[list[int]]:
    """Response token ids for each prompt, cut after the first EOS (kept) or at max_new_tokens."""
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    was_training = model.training
    model.eval()
    out: list[list[int]] = []
    for i in range(0, len(prompts), micro_batch_size):
        chunk = prompts[i : i + micro_batch_size]
        noise = episode_noise(seed, list(range(i, i + len(chunk))), max_new_tokens)  # (B, R)
        _, _, response_ids, response_mask = sample(model, chunk, noise, temperature if do_sample else 0.0, top_p,
                                                   eos, pad)
        out += [row[: int(n)] for row, n in zip(response_ids.tolist(), response_mask.sum(-1).tolist())]
    model.train(was_training)
    return out
