"""`rlhf eval`: compare models on held-out prompts (paper section 3.6 and 4)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rlhf.config import require


@dataclass
class EvalConfig:
    """Sample every model on the same held-out prompts with the same decoding, then report
    reward, win rate against the baseline with a bootstrap interval, KL to a reference,
    response length and perplexity on held-out pretraining text (the alignment tax)."""

    models: list[str] = field(default_factory=list)
    """Model folders to evaluate (e.g. [runs/sft/final, runs/ppo/final])."""
    labels: list[str] = field(default_factory=list)
    """Short names for the models in metric keys; empty: the run folder's name for paths ending in final/, else the folder name."""
    baseline: str = ""
    """Model the win rates are against (evaluated too if not in models); empty: the first model."""
    prompts_file: str = ""
    """Held-out prompts (formats: prompts)."""
    chat_template: str = ""
    """Chat template for the sampled models' conversation prompts: a built-in (plain, chatml) or a Jinja file, in
    place of each model's own. Reward models and a reward-model judge keep the template saved with them. Empty:
    each model's own."""
    num_prompts: int = 0
    """Evaluate on the first this many prompts; 0 uses all."""
    reward_model: str = ""
    """Reward model folder for eval/reward/<name>; also the default judge."""
    judge: str = ""
    """Who compares two responses: empty uses reward_model, a reward model folder, or a Python callable
    `module:function` with judge(prompt, response_a, response_b) -> probability that a is better."""
    reference: str = ""
    """Policy that eval/kl/<name> is measured against; empty uses the baseline."""
    pretrain_file: str = ""
    """Held-out pretraining text (formats: pretraining text) for eval/perplexity/<name>; empty skips it."""
    num_pretrain: int = 256
    """Pretraining documents scored for perplexity; 0 uses all."""
    max_new_tokens: int = 64
    """Maximum response length; responses also stop at EOS."""
    max_length: int = 512
    """Maximum prompt + response tokens (prompts cut from the left); pretraining documents are cut to this."""
    temperature: float = 1.0
    """Sampling temperature for every model (also used in the KL and log-prob)."""
    top_p: float = 1.0
    """Nucleus sampling mass for every model."""
    batch_size: int = 16
    """Sequences per forward pass while sampling and scoring."""
    num_bootstrap: int = 1000
    """Bootstrap resamples of the prompts for the 95% win-rate interval."""
    seed: int = 0
    """Seeds sampling (every model sees the same random numbers) and the bootstrap."""
    precision: str = "fp32"
    """fp32 or bf16 for all models."""

    def validate(self) -> None:
        require(bool(self.models), "models is required: models=[runs/sft/final,runs/ppo/final]")
        require(bool(self.prompts_file), "prompts_file is required (held-out prompts, formats: prompts)")
        require(not self.labels or len(self.labels) == len(self.models),
                f"labels must name every model: {len(self.labels)} labels for {len(self.models)} models")
        require(self.max_new_tokens >= 1 and self.max_length > self.max_new_tokens,
                "max_new_tokens must be >= 1 and below max_length")
        require(self.temperature > 0 and 0 < self.top_p <= 1, "temperature must be > 0 and top_p in (0, 1]")
        require(self.batch_size >= 1 and self.num_bootstrap >= 1, "batch_size and num_bootstrap must be >= 1")
        require(bool(self.judge or self.reward_model),
                "no judge for the win rates: give reward_model=path/to/rm, or judge=path-or-module:function")
        require(self.precision in ("fp32", "bf16"), f"precision must be fp32 or bf16, got {self.precision!r}")
