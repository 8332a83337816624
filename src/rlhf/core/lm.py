"""A causal LM wrapper that computes logits only at the positions that need them.

SFT needs logits where the next token is a response token; PPO needs them on
response tokens only. Skipping the unembedding elsewhere saves a (T, H) x (H, V)
matmul per prompt token. The wrapper is the module handed to `accelerate`, so
DDP/FSDP see one forward per step.
"""

from __future__ import annotations

import torch
from torch import nn


def backbone_and_head(model) -> tuple[nn.Module, nn.Module]:
    """(transformer body returning last_hidden_state, unembedding) of a causal LM, LoRA or not."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.base_model, inner.get_output_embeddings()


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
