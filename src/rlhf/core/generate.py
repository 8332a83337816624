"""Batched sampling from a causal LM with a KV cache: left padding, temperature,
top-p, a maximum response length and stop at EOS."""

from __future__ import annotations

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


@torch.no_grad()
def generate(
    model, tokenizer, prompts: list[list[int]], max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0,
    do_sample: bool = True, micro_batch_size: int = 64,
) -> list[list[int]]:
    """Response token ids for each prompt, cut after the first EOS (kept) or at max_new_tokens."""
    from transformers import GenerationConfig

    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    gen_config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature if do_sample else None,
        top_p=top_p if do_sample else None, top_k=0 if do_sample else None, eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id, use_cache=True,
    )
    was_training = model.training
    model.eval()
    out: list[list[int]] = []
    for i in range(0, len(prompts), micro_batch_size):
        chunk = prompts[i : i + micro_batch_size]
        ids, mask = left_pad(chunk, tokenizer.pad_token_id)
        seq = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=gen_config)
        for row in seq[:, ids.shape[1] :].tolist():
            if eos in row:
                row = row[: row.index(eos) + 1]
            out.append(row)
    model.train(was_training)
    return out
