"""Batched sampling from a causal LM with a KV cache: left padding, temperature, top-p,
a maximum response length and stop at EOS. One sampler for every stage (PPO rollouts,
eval, SFT's validation-reward selection).

Prompts are left-padded to (B, P) and responses right-padded to (B, R). Sampling draws
one uniform number per (episode, token) from a generator seeded by the episode's global
index and picks the token by inverse CDF, so an episode's response depends on its own
prompt and the weights only: the same with 1 or 2 processes, in any batch, after a resume.
"""

from __future__ import annotations

import inspect

import torch


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, P) ids and attention mask, prompts aligned to the right edge."""
    P = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), P), pad_id, dtype=torch.long)  # (B, P)
    mask = torch.zeros((len(prompts), P), dtype=torch.long)  # (B, P)
    for b, p in enumerate(prompts):
        ids[b, P - len(p) :] = torch.tensor(p)
        mask[b, P - len(p) :] = 1
    return ids, mask


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
    prompt_ids, prompt_mask = (x.to(device) for x in left_pad(prompts, pad_id))  # (B, P)
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
