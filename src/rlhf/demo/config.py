"""`rlhf demo`'s config: one typed dataclass, its docstrings are `rlhf demo --help`."""

from __future__ import annotations

from dataclasses import dataclass, field

from rlhf.config import require
from rlhf.demo.pretrain import SHAPES, PretrainConfig

PPO_BATCH = 64  # episodes per PPO iteration in every demo PPO run


@dataclass
class PPOLearningRates:
    """PPO peak learning rate of policy and value model at each size (override one: ppo_lr.large=2e-4)."""

    small: float = 3e-4
    """PPO peak learning rate (policy and value model) at the small size."""
    medium: float = 2e-4
    """PPO peak learning rate at the medium size."""
    large: float = 1e-4
    """PPO peak learning rate at the large size. With 3e-4, the first updates moved the policy by an approximate
    KL of 0.1-0.24 a token and PPO-large lost to SFT-large (0.479); with 1e-4, 0.07 and level (0.50-0.51)."""


@dataclass
class DemoConfig:
    """Pretrain, SFT, RM, PPO and PPO-ptx on the embedded world at two sizes (three with full=true), then evaluate every
    model with held-out labelers against the largest SFT model (the paper's Figure 1)."""

    seed: int = 0
    """World seed (facts, users, labelers) and the seed of every stage."""
    quick: bool = False
    """One small size, a quarter of the data, fewer PPO episodes and eval prompts: the same report in ~1-2 minutes
    (a smoke test of the pipeline, not the result)."""
    full: bool = False
    """All three sizes, adding large (2.8M parameters, 29x small), with the reward model from SFT-large: the
    paper's three-size picture, 47 to 57 minutes on two cores (docs/demo.md, "Budget"). The default runs
    small and medium in the 20-minute budget (docs/demo.md, "Budget", has both)."""
    sizes: list[str] = field(default_factory=list)
    """Model sizes to run; empty: small and medium, all three with full=true, small only with quick=true."""
    workers: int = 0
    """Worker processes for the stages that do not depend on each other (the SFT sizes, the six PPO runs, sampling
    every model); 0 is one per core. Results are identical for any number (each stage seeds itself)."""
    threads: int = 1
    """torch intra-op threads; 0 keeps torch's default. One thread: tiny models gain little from a second, and
    on a busy machine two spinning OpenMP threads were measured 14x slower per step than one."""
    cache: str = ""
    """Folder of cached base models (see `rlhf pretrain`); empty: $RLHF_CACHE or ~/.cache/rlhf."""
    pretrain_steps: int = 6000
    """Pretraining steps per size. With the default (and seed 0) the package's shipped bases are used and nothing is
    trained; any other value or seed trains new bases once and caches them (small and medium: ~20 minutes on two
    idle cores; large: over an hour)."""
    data_scale: float = 0.1
    """Dataset size as a fraction of the paper's Table 6 (0.1 = 1,273 SFT and 3,320 RM prompts; PPO prompts: ppo_prompts;
    the world has ~50,000 distinct customer prompts). Quick: 0.025. 0.05 halves the SFT and RM stages' time, but its
    reward model is weaker and PPO-medium came out level with SFT-medium on world seeds 1 and 2 (docs/demo.md)."""
    eval_prompts: int = 600
    """Held-out customer prompts for the win rates and flags (quick: 100). 600 make a 95% interval about +-0.02
    wide: PPO's gain over SFT at these sizes is a few points, and 200 prompts (+-0.03) could not separate it."""
    sft_epochs: float = 6.0
    """SFT passes over the demonstrations (the paper: 16)."""
    sft_lr: float = 1e-3
    """SFT peak learning rate."""
    chat: bool = False
    """Prompts reach SFT, the reward model and PPO as one-turn conversations in the base tokenizer's chat template
    (`<|user|> prompt<|assistant|>`); the base models (GPT, GPT-prompted) read them plain, as GPT-3 did. The
    world's web text holds the same instruction lines, followed by more of them: with plain prompts (the default,
    as the paper's API prompts) SFT answers by erasing that, and PPO-ptx's pretraining term brings it back. With
    chat, SFT answers better and PPO-ptx keeps up with PPO, but the reward model can no longer tell the better
    SFT samples apart and PPO gains nothing over SFT (docs/demo.md, "Chat format")."""
    sft_ptx_coef: float = 0.0
    """Weight of the pretraining text's LM loss mixed into each SFT step (SFT's `ptx_coef`); 0: the paper's SFT."""
    rm_size: str = ""
    """Size of the SFT model the single reward model starts from, for every policy size; empty: medium, and large
    with full=true. The paper used one 6B RM for all, not 175B: it saves much compute and the large one trained
    less stably. Here the medium RM trains in a quarter of the large one's time and ranked better on world seed 0,
    but where SFT-large is far ahead of SFT-medium (seeds 1 and 2) the large RM ranked SFT-large's samples far
    better and PPO gained at every size with it (docs/demo.md, "`full=true`"). A size the run lacks falls back to
    its largest."""
    rm_policy_samples: int = 3
    """Responses per comparison sampled from the SFT models (one size per prompt in turn)."""
    rm_world_samples: int = 3
    """Responses per comparison of mixed quality written by the world (like samples of other models)."""
    rm_rankings_per_prompt: int = 2
    """Independent sets of K responses ranked per RM training prompt: the world has too few distinct prompts for the
    paper's 33k, and the labelers' noise needs data (one set: 64.7% validation accuracy; the gold standard: ~75%)."""
    rm_rounds: int = 0
    """Rounds of comparisons: 1, 2, or 0 for 2 (quick: 1). Round 2 ranks samples of round-1 policies (plain PPO at
    each size on the round-1 reward model, round1_episodes each) beside SFT samples, and the final
    reward model trains on both rounds from the SFT model again: the paper's later comparisons came partly from its
    PPO policies, so its RM saw what PPO learns to exploit. It raised 11 of the 12 PPO and PPO-ptx win rates of
    world seeds 0-2, for about a third more time (docs/demo.md, "Two rounds")."""
    round1_episodes: int = 768
    """PPO episodes of each round-1 policy that round 2's comparisons sample (quick: 128; in whole batches of 64).
    They only need to show the reward model what PPO learns first."""
    rm_members: int = 1
    """Reward models PPO scores with: the final one, trained with this many seeds on the same comparisons (in
    parallel workers), their mean score the reward (an ensemble; PPO's value model starts from the first). Two
    members gained nothing on world seeds 0 and 2 (docs/demo.md): they share the SFT model and the data."""
    rm_epochs: float = 2.0
    """Reward-model passes over the comparisons (the paper: 1)."""
    rm_lr: float = 5e-4
    """Reward-model peak learning rate."""
    ppo_prompts: int = 1536
    """PPO training prompts (customer prompts; quick: 64), half of Table 6's PPO set at data_scale 0.1. Measured at
    the medium size over four PPO seeds (docs/demo.md, "PPO's episodes"): 384 prompts x 8 passes won 0.506 against
    SFT on average, 1,536 x 8 (four times the episodes) 0.525, 0.529 with one PPO epoch; 384 x 32 0.520."""
    ppo_passes: float = 8.0
    """PPO episodes per PPO training prompt (the paper: 256k episodes over 31k prompts, about 8). With the gold
    standard itself as the reward, PPO-large needed ~10 passes to beat SFT-large on the first world (docs/demo.md)."""
    ppo_epochs: int = 1
    """PPO epochs over each batch of episodes. Measured at the medium size (docs/demo.md): 2 epochs gained as much
    on held-out prompts as 4, and with four times the episodes 1 epoch as much as 2 (three PPO seeds each), in a
    third less time."""
    ppo_lr: PPOLearningRates = field(default_factory=PPOLearningRates)
    """PPO peak learning rates by size: smaller steps for larger models."""
    value_warmup_iterations: int = 0
    """PPO iterations (of 64 episodes) that train only the value model before the policy moves."""
    kl_coef: float = 0.1
    """beta, the per-token KL penalty toward the SFT model (the paper: 0.02, with a far better reward model)."""
    no_eos_penalty: float = 1.0
    """Subtracted from the reward of a response that hits max_new_tokens without EOS (implementation-details
    checklist): without it PPO learned to ramble stories to the length cap, which the reward model liked."""
    ptx_coef: float = 0.02
    """gamma of PPO-ptx, weight of the pretraining loss (per token; the paper's 27.8 is on its own scale). A larger
    gamma keeps more of the base's language modelling and costs win rate: 0.02 already brings PPO-medium's held-out
    perplexity from 12 to 4 (base 2.3) and keeps most of PPO's win rate; 0.25 brought it to 2.6 and fell below SFT,
    because the world's web text continues instructions with more of them (docs/demo.md, "The ptx coefficient")."""
    max_new_tokens: int = 32
    """Response length cap for sampling, PPO and evaluation (demonstrations average ~9 tokens)."""
    temperature: float = 1.0
    """Sampling temperature for comparisons, PPO and evaluation."""

    def validate(self) -> None:
        unknown = [s for s in self.sizes if s not in SHAPES]
        require(not unknown, f"sizes must be some of {list(SHAPES)}, got {self.sizes}")
        require(self.rm_size in ("", *SHAPES), f"rm_size must be empty or one of {list(SHAPES)}")
        require(self.threads >= 0 and self.workers >= 0, "threads and workers must be >= 0")
        require(0 < self.data_scale <= 1, "data_scale must be in (0, 1]")
        require(self.eval_prompts >= 20, "eval_prompts must be >= 20: intervals need prompts")
        require(self.rm_policy_samples + self.rm_world_samples >= 2, "comparisons need K >= 2 responses")
        require(self.ppo_prompts >= 16 and self.ppo_passes > 0 and self.ppo_epochs >= 1,
                "ppo_prompts must be >= 16, ppo_passes > 0 and ppo_epochs >= 1")
        require(self.rm_members >= 1, "rm_members must be >= 1")
        require(self.rm_rounds in (0, 1, 2) and self.round1_episodes >= 1,
                "rm_rounds must be 0, 1 or 2 and round1_episodes >= 1")
        require(self.rm_rankings_per_prompt >= 1 and self.no_eos_penalty >= 0,
                "rm_rankings_per_prompt must be >= 1 and no_eos_penalty >= 0")
        require(self.temperature > 0 and self.max_new_tokens >= 4, "temperature > 0 and max_new_tokens >= 4")

    @property
    def run_sizes(self) -> list[str]:
        order = list(SHAPES)
        if self.sizes:  # asked for by name: honoured with quick=true too
            return sorted(self.sizes, key=order.index)
        if self.quick:
            return ["small"]
        return order if self.full else ["small", "medium"]

    @property
    def num_workers(self) -> int:
        from rlhf.demo.workers import default_workers

        return self.workers or default_workers()

    @property
    def reward_size(self) -> str:
        size = self.rm_size or ("large" if self.full else "medium")
        return size if size in self.run_sizes else self.run_sizes[-1]

    @property
    def scale(self) -> float:
        return min(self.data_scale, 0.025) if self.quick else self.data_scale

    @property
    def num_eval_prompts(self) -> int:
        return min(self.eval_prompts, 100) if self.quick else self.eval_prompts

    @property
    def num_ppo_prompts(self) -> int:
        return min(self.ppo_prompts, 64) if self.quick else self.ppo_prompts

    @property
    def num_rm_rounds(self) -> int:
        return self.rm_rounds or (1 if self.quick else 2)

    @property
    def num_ppo_episodes(self) -> int:
        """ppo_passes over the PPO prompts, in whole batches of 64 (at least one)."""
        return whole_batches(self.ppo_passes * self.num_ppo_prompts)

    @property
    def num_round1_episodes(self) -> int:
        return whole_batches(min(self.round1_episodes, 128) if self.quick else self.round1_episodes)

    def pretrain_config(self) -> PretrainConfig:
        return PretrainConfig(seed=self.seed, sizes=self.run_sizes, cache=self.cache, steps=self.pretrain_steps,
                              threads=self.threads, workers=self.workers)


def whole_batches(episodes: float) -> int:
    """PPO episodes rounded to whole PPO batches (at least one)."""
    return max(1, round(episodes / PPO_BATCH)) * PPO_BATCH
