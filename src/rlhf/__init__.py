"""rlhf: the InstructGPT pipeline (Ouyang et al., 2022) on any Hugging Face causal LM.

Kept import-light: `import rlhf` must not import torch. Public loaders are
reached lazily through module attributes.
"""

__version__ = "0.1.0"


def load_reward_model(path, **kwargs):
    """One-line loader: `rlhf.load_reward_model("runs/rm/final").score(prompts, responses)`."""
    from rlhf.core.reward import load_reward_model as _load

    return _load(path, **kwargs)
