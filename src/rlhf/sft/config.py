"""`rlhf sft`: supervised fine-tuning on labeler demonstrations (paper section 3.5)."""

from __future__ import annotations

from dataclasses import dataclass

from rlhf.config import require
from rlhf.core.train import TrainConfig


@dataclass
class SFTConfig(TrainConfig):
    """Fine-tune a causal LM on demonstrations, loss on response tokens only.

    The paper trained 16 epochs with cosine decay and residual dropout 0.2, and
    picked the final model by reward-model score on the validation set."""

    epochs: float = 3.0
    """Passes over the demonstrations (the paper: 16; SFT overfits validation loss after 1, yet RM score keeps improving)."""
    dropout: float = 0.0
    """Residual/attention dropout while fine-tuning (the paper used 0.2); -1 keeps the model's own."""
    packing: bool = False
    """Pack several examples into each max_length row (block-diagonal attention, positions restarting per example)."""
    reward_model: str = ""
    """Reward model folder; when given, each epoch also scores greedy responses to the eval prompts."""
    select_metric: str = ""
    """Metric that picks the checkpoint saved as final/: eval/loss (lower is better) or eval/reward (higher);
    empty: eval/reward when reward_model is given (the paper's choice, section 3.5), else eval/loss."""
    pretrain_file: str = ""
    """Pretraining text (formats: pretraining text) mixed into every step when ptx_coef > 0."""
    ptx_coef: float = 0.0
    """Weight of the LM loss on pretraining text (per token) added to the demonstrations' loss at each step: the
    PPO-ptx term applied to SFT, so that fine-tuning a small model on few demonstrations does not erase what
    pretraining taught it. 0 (the paper's SFT) trains on demonstrations only."""
    ptx_batch_size: int = 16
    """Pretraining sequences per optimizer step, summed over processes."""
    ptx_max_length: int = 128
    """Pretraining sequences are cut to this many tokens."""
    eval_max_new_tokens: int = 64
    """Response length when generating for the eval/reward metric."""
    eval_reward_prompts: int = 64
    """How many eval prompts to generate for when scoring with reward_model."""

    def validate(self) -> None:
        self.validate_train()
        require(self.dropout == -1 or 0 <= self.dropout < 1, "dropout must be in [0, 1), or -1 to keep the model's")
        require(self.select_metric in ("", "eval/loss", "eval/reward"), "select_metric must be eval/loss or eval/reward")
        require(self.ptx_coef >= 0 and self.ptx_batch_size >= 1 and self.ptx_max_length >= 2,
                "ptx_coef must be >= 0, ptx_batch_size >= 1 and ptx_max_length >= 2")
        require(self.ptx_coef == 0 or bool(self.pretrain_file),
                "ptx_coef > 0 needs pretrain_file=path/to/pretrain.jsonl (formats: pretraining text)")
        require(self.select_metric != "eval/reward" or bool(self.reward_model),
                "select_metric=eval/reward needs reward_model=path/to/rm")

    @property
    def selected_by(self) -> str:
        """The metric that picks final/: select_metric, or the paper's validation RM score when a reward model is given."""
        return self.select_metric or ("eval/reward" if self.reward_model else "eval/loss")
