"""`rlhf rm`: the K-way reward model (paper section 3.5)."""

from __future__ import annotations

from dataclasses import dataclass

from rlhf.config import require
from rlhf.core.train import TrainConfig


@dataclass
class RMConfig(TrainConfig):
    """Train a scalar reward on rankings of K responses, all C(K,2) pairs of a prompt in one batch element.

    `batch_size` and `micro_batch_size` count prompts (rankings), not pairs: every
    response of a prompt is forwarded once, which is the paper's reason for the
    efficiency of K-way comparisons."""

    lr: float = 9e-6
    """Peak learning rate of AdamW (the paper's 6B RM used 9e-6)."""
    epochs: float = 1.0
    """Passes over the rankings (the paper trained a single epoch: RMs overfit quickly)."""
    batch_size: int = 64
    """Rankings (prompts) per optimizer step, summed over processes (the paper: 64)."""
    micro_batch_size: int = 4
    """Rankings per forward/backward on one process (K rows each)."""
    dropout: float = 0.0
    """Dropout while training the reward model; -1 keeps the model's own."""
    group_by_length: bool = True
    """Forward each micro-batch's rows (prompt + response) in groups of similar length, each padded only to its
    own longest row (`core/groups.length_groups`); the loss is the same. Off with compile=true."""
    group_cost_tokens: int = 32
    """What one more forward costs, in padded tokens, when choosing the groups (see group_by_length)."""
    norm_file: str = ""
    """Demonstrations whose mean reward is set to 0 after training (the paper's normalisation before RL). Empty: the
    responses of train_file."""
    norm_max_records: int = 2000
    """At most this many reference records are scored for the normalisation offset."""

    def validate(self) -> None:
        self.validate_train()
        require(self.dropout == -1 or 0 <= self.dropout < 1, "dropout must be in [0, 1), or -1 to keep the model's")
        require(self.norm_max_records >= 1, "norm_max_records must be >= 1")
        require(self.group_cost_tokens >= 0, f"group_cost_tokens must be >= 0, got {self.group_cost_tokens}")
