"""Logits only at the positions that need them.

SFT needs logits where the next token is a response token; PPO and eval need them on
response tokens only. Skipping the unembedding elsewhere saves a (T, H) x (H, V)
matmul per prompt token. `ResponseLM` is the module SFT hands to `accelerate`, so
DDP/FSDP see one forward per step.
"""

from __future__ import annotations

import torch
from torch import nn

from rlhf.core.generate import positions_from_mask


def backbone_and_head(model) -> tuple[nn.Module, nn.Module]:
    """(transformer body returning last_hidden_state, unembedding) of a causal LM, LoRA or not."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.base_model, inner.get_output_embeddings()


def response_logits(lm, ids: torch.Tensor, mask: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """Logits predicting each response token of left-padded prompts followed by right-padded responses,
    unembedding only those. (B, P+R) -> (B, R, V)."""
    body, head = backbone_and_head(lm)
    hidden = body(input_ids=ids, attention_mask=mask, position_ids=positions_from_mask(mask),
                  use_cache=False).last_hidden_state  # (B, P+R, H)
    return head(hidden[:, prompt_len - 1 : -1])  # (B, R, V)


class ResponseLM(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: torch.Tensor,  # (B, T) or (B, 1, T, T) for packed rows
        select: torch.Tensor,  # (B, T) bool: positions whose next-token logits we need
        position_ids: torch.Tensor | None = None,  # (B, T)
    ) -> torch.Tensor:
        body, head = backbone_and_head(self.model)
        hidden = body(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False).last_hidden_state  # (B, T, H)
        return head(hidden[select])  # (N, V)
