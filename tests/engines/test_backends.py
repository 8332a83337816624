"""What the vLLM backend needs from the rest of the package, checked without vLLM installed:
the weights it is sent carry the checkpoint's names with LoRA merged, and a config asking for
vLLM where it is missing is refused at load time with what to install."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from rlhf.config import ConfigError, load_config
from rlhf.core.models import LoraConfig, apply_lora, load_causal_lm
from rlhf.core.vllm_engine import checkpoint_weights, episode_seed


def test_weights_sent_to_vllm_have_checkpoint_names_and_the_adapter_merged(tiny_gpt2):
    plain = load_causal_lm(str(tiny_gpt2))
    model = apply_lora(load_causal_lm(str(tiny_gpt2)), LoraConfig(r=4, targets=["c_attn"]))
    with torch.no_grad():  # a trained adapter: B is zero at init, which would hide a missing merge
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.1)
    expected = {}
    for name, module in model.named_modules():
        if name.endswith("c_attn") and hasattr(module, "lora_A"):
            a, b = module.lora_A["default"].weight, module.lora_B["default"].weight  # (r, in), (out, r)
            scale = module.scaling["default"]
            # GPT-2's Conv1D stores (in, out), the transpose of a Linear's weight.
            expected[name.removeprefix("base_model.model.") + ".weight"] = module.base_layer.weight + scale * (b @ a).T
    with checkpoint_weights(model) as weights:
        sent = {k: v.clone() for k, v in weights}
    assert sent.keys() == plain.state_dict().keys()
    assert expected and all(torch.allclose(sent[k], v, atol=1e-6) for k, v in expected.items())
    # Unmerged afterwards: the base weights are back to what was loaded.
    for name, module in model.named_modules():
        if name.endswith("c_attn") and hasattr(module, "base_layer"):
            key = name.removeprefix("base_model.model.") + ".weight"
            assert torch.equal(module.base_layer.weight, plain.state_dict()[key])


def test_episode_seeds_differ_between_episodes_and_runs():
    seeds = {episode_seed(s, e) for s in range(3) for e in range(1000)}
    assert len(seeds) == 3000 and all(0 <= x < 2**63 for x in seeds)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
@pytest.mark.parametrize("stage", ["ppo", "eval"])
def test_vllm_backend_without_vllm_is_refused_with_what_to_install(stage):
    from rlhf.eval.config import EvalConfig
    from rlhf.ppo.config import PPOConfig

    cls, args = {"ppo": (PPOConfig, ["policy=p", "reward_model=r", "prompts_file=x.jsonl"]),
                 "eval": (EvalConfig, ["models=[a]", "prompts_file=x.jsonl", "reward_model=r"])}[stage]
    with pytest.raises(ConfigError, match=r"generation_backend=vllm needs vLLM.*setup.sh --vllm"):
        load_config(cls, None, [*args, "generation_backend=vllm"])
    with pytest.raises(ConfigError, match="generation_backend must be one of native, vllm"):
        load_config(cls, None, [*args, "generation_backend=sglang"])
