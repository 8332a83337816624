"""`rlhf ppo`: optimise the SFT policy against the reward model (paper section 3.5)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rlhf.config import require
from rlhf.core.generate import GenerationConfig
from rlhf.core.train import OptimConfig, RunConfig


@dataclass
class PPOConfig(RunConfig, OptimConfig, GenerationConfig):
    """PPO (and PPO-ptx with ptx_coef > 0) in the paper's bandit setting: a random prompt,
    one sampled response, one reward-model score, the episode ends.

    Batches: `batch_size` episodes are generated per PPO iteration; each PPO epoch splits
    them into mini-batches of `mini_batch_size` (one optimizer step each), and each process
    runs `micro_batch_size` episodes per forward/backward. All three are global but the last.

    The optimizer, run and generation keys (lr, seed, precision, lora, max_new_tokens, temperature, ...) are
    those of every stage; the schedule, logging and checkpoints count PPO iterations."""

    # PPO's defaults for keys of the shared blocks (documented there)
    warmup_ratio: float = 0.0
    logging_steps: int = 1
    save_steps: int = 10

    policy: str = ""
    """Policy to start from, normally the SFT model's final/ folder (also the frozen reference)."""
    reward_model: str = ""
    """Reward model folder written by `rlhf rm`; its score (minus its offset) is the reward. Several folders separated
    by commas are an ensemble: the mean of their scores is the reward, and the value model starts from the first."""
    reward_fn: str = ""
    """A Python reward in place of the reward model's score, as "module:function" (importable from the working
    directory): called with this process's episodes as fn(records, responses), the prompt-file records (every
    field, so a rule can read its own keys) and the decoded responses, it returns one float each. The value model
    still starts from reward_model (or value_model). For rule-based rewards, and for the demo's diagnostic of what
    PPO does with a perfect reward model: reward_fn=rlhf.world.evaluate:gold_reward."""
    value_model: str = ""
    """Folder the value model starts from; empty uses reward_model (the paper initialises the value function from the RM)."""
    prompts_file: str = ""
    """Prompts (formats: prompts) to draw episodes from, cycled in a seeded order."""
    pretrain_file: str = ""
    """Pretraining text (formats: pretraining text) for the ptx term; required when ptx_coef > 0."""
    chat_template: str = ""
    """Chat template for conversation prompts: a built-in (plain, chatml) or a Jinja file, in place of the
    policy's own, saved with final/. Empty: the policy's own, normally the one SFT saved. The reward model reads
    the policy's tokens, so it should have been trained with the same template."""
    total_episodes: int = 1024
    """Episodes (prompt, response pairs) to train on; rounded down to whole batches."""
    batch_size: int = 64
    """Episodes generated per PPO iteration, summed over processes."""
    mini_batch_size: int = 16
    """Episodes per optimizer step, summed over processes; batch_size must be a multiple."""
    micro_batch_size: int = 8
    """Episodes per forward/backward on one process; gradient accumulation makes up the mini-batch."""
    group_by_length: bool = True
    """Run each micro-batch as groups of episodes of similar length, each padded only to its own longest
    prompt and response (`core/groups.length_groups`); the rollout's scoring too. Gradients and scores are
    the same sums, with less padding: 1.2-1.4x faster training when prompt lengths vary. Off under FSDP
    (--use_fsdp), where every process must run the same number of forwards (docs/engines.md)."""
    group_cost_tokens: int = 32
    """What one more forward costs, in padded tokens, when choosing the groups: a group is split off only
    if it saves more padding than this. 32 fits small models on a CPU; raise it where a forward's fixed
    cost is larger (GPUs, many layers)."""
    value_warmup_iterations: int = 0
    """First PPO iterations that train only the value model, the policy frozen (OpenRLHF's freezing_actor_steps).
    The value model starts from the reward model, which never scored partial responses, so its first advantages
    are mostly noise that the policy would follow. They count toward total_episodes."""
    ppo_epochs: int = 4
    """Passes over each rollout batch (Schulman et al. 2017; lm-human-preferences used 4)."""
    max_length: int = 512
    """Maximum prompt + response tokens; prompts are cut from the left to max_length - max_new_tokens."""
    kl_coef: float = 0.02
    """beta of the objective r - beta * log(pi_RL / pi_SFT), per token (paper section 3.5 used 0.02); the start value when adaptive."""
    kl_target: float = 0.0
    """Target KL (nats per response, summed over tokens) of the adaptive controller (Ziegler et al. 2019 used 6); 0 keeps kl_coef fixed."""
    kl_horizon: int = 10000
    """Horizon of the adaptive controller in episodes: how fast beta moves (Ziegler et al. 2019: 10000)."""
    no_eos_penalty: float = 0.0
    """Subtracted from the score of a response that never emits EOS (details checklist used 1.0); 0 turns it off."""
    gamma: float = 1.0
    """Discount over response tokens (1.0 in lm-human-preferences: the score arrives at the end)."""
    gae_lambda: float = 0.95
    """GAE lambda (Schulman et al. 2016)."""
    clip_range: float = 0.2
    """PPO ratio clip epsilon."""
    value_clip_range: float = 0.2
    """Value predictions move at most this far from the rollout values per batch (clipped value loss)."""
    vf_coef: float = 0.1
    """Weight of the value loss in the summed loss (lm-human-preferences: 0.1); it only trains the value model."""
    whiten_rewards: bool = False
    """Scale per-token rewards to unit variance over the batch before GAE (details checklist; off in the paper's setup)."""
    early_stop_kl: float = 0.0
    """Stop the remaining PPO epochs of a batch once the mini-batch's approximate KL (per token) exceeds this; 0 never stops."""
    ptx_coef: float = 0.0
    """gamma of PPO-ptx: weight of the pretraining LM loss added at each optimizer step (the paper used 27.8); 0 is plain PPO."""
    ptx_batch_size: int = 16
    """Pretraining sequences per optimizer step, summed over processes."""
    ptx_max_length: int = 256
    """Pretraining sequences are cut to this many tokens."""
    log_samples: int = 2
    """Decoded samples (prompt, response, score, KL) written to samples.jsonl per logging step."""

    @property
    def iterations(self) -> int:
        return self.total_episodes // self.batch_size

    def validate(self) -> None:
        self.validate_optim()
        self.validate_run()
        self.validate_generation()
        require(bool(self.policy), "policy is required: the SFT model folder (policy=runs/sft/final)")
        require(bool(self.reward_model), "reward_model is required: a folder written by `rlhf rm` (reward_model=runs/rm/final); "
                "with reward_fn it only seeds the value model")
        require(not self.reward_fn or re.fullmatch(r"[\w.]+:\w+", self.reward_fn) is not None,
                f"reward_fn must be 'module:function' (e.g. rlhf.world.evaluate:gold_reward), got {self.reward_fn!r}")
        require(bool(self.prompts_file), "prompts_file is required (prompts_file=path/to/prompts.jsonl)")
        require(self.batch_size >= 1 and self.mini_batch_size >= 1 and self.micro_batch_size >= 1,
                "batch_size, mini_batch_size and micro_batch_size must be >= 1")
        require(self.batch_size % self.mini_batch_size == 0,
                f"batch_size ({self.batch_size}) must be a multiple of mini_batch_size ({self.mini_batch_size})")
        require(self.total_episodes >= self.batch_size,
                f"total_episodes ({self.total_episodes}) must be at least one batch ({self.batch_size})")
        require(self.ppo_epochs >= 1, "ppo_epochs must be >= 1")
        require(0 <= self.value_warmup_iterations < self.iterations,
                f"value_warmup_iterations must be in [0, {self.iterations}) (the iterations of total_episodes)")
        require(self.group_cost_tokens >= 0, f"group_cost_tokens must be >= 0, got {self.group_cost_tokens}")
        require(self.max_length > self.max_new_tokens, "max_length must exceed max_new_tokens (room for the prompt)")
        require(self.kl_coef >= 0 and self.kl_target >= 0 and self.kl_horizon >= 1,
                "kl_coef and kl_target must be >= 0, kl_horizon >= 1")
        require(0 <= self.gamma <= 1 and 0 <= self.gae_lambda <= 1, "gamma and gae_lambda must be in [0, 1]")
        require(self.clip_range > 0 and self.value_clip_range > 0, "clip_range and value_clip_range must be > 0")
        require(self.ptx_coef >= 0, "ptx_coef must be >= 0")
        require(self.ptx_coef == 0 or bool(self.pretrain_file),
                "ptx_coef > 0 needs pretrain_file=path/to/pretrain.jsonl (formats: pretraining text)")
