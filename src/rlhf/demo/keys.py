"""The demo's model names and metric keys, in one place (every key is defined in docs/demo.md).

A metric key is `section/part_part_...`: `metric_key("winrate", "ppo", "large")` is
`winrate/ppo_large`, `metric_key("flags", "hallucination", "sft", "small")` is
`flags/hallucination_sft_small`. Intervals sit beside their value under `section_low/`
and `section_high/`.
"""

from __future__ import annotations

MODELS = ("gpt", "gpt_prompted", "sft", "ppo", "ppo_ptx")
"""The models of Figure 1, in the paper's order: bare base model, few-shot prompted base model, SFT, PPO, PPO-ptx."""
BASE_MODELS = ("gpt", "gpt_prompted")
"""The pretrained models, unprompted and few-shot prompted: they read plain prompts, as GPT-3 did."""
RL_MODELS = ("ppo", "ppo_ptx")
TAX_MODELS = ("gpt", "sft", "ppo", "ppo_ptx")
"""Models whose alignment tax is measured (the prompted baseline has the base model's weights, so its tax)."""
HEADLINE_BASELINES = ("gpt", "gpt_prompted")
"""The largest base models the smallest PPO-ptx is compared with head to head (the paper's 1.3B vs 175B)."""
BEST_OF = 8
"""Samples per eval prompt of the reward model's best-of-n measurement (`rm/best_of_8_{random,rm,gold}`)."""
FIGURE4_FLAGS = ("fails_instruction", "hallucination", "inappropriate_for_assistant", "follows_constraints")
"""The metadata flags of the paper's Figure 4 (a subset of the gold standard's flags)."""


def metric_key(section: str, *parts: str) -> str:
    """`section/part1_part2_...`: the one way a demo metric is named."""
    return f"{section}/{'_'.join(parts)}"


def interval_keys(section: str, *parts: str) -> tuple[str, str, str]:
    """The keys of a value and its 95% interval: (section/x, section_low/x, section_high/x)."""
    return tuple(metric_key(s, *parts) for s in (section, f"{section}_low", f"{section}_high"))
