"""Fixtures for the engine tests: tiny models whose head size vLLM's CPU attention supports."""

from __future__ import annotations

import json

import pytest

# vLLM's CPU attention takes head sizes 32, 64, 80, ...; the suite's default tiny models have 16.
VLLM_SHAPE = {"d_model": 64, "n_head": 2}


@pytest.fixture(scope="session")
def vllm_gpt2(tiny_model_factory):
    return tiny_model_factory("gpt2", **VLLM_SHAPE)


@pytest.fixture(scope="session")
def vllm_llama(tiny_model_factory):
    return tiny_model_factory("llama", **VLLM_SHAPE)


@pytest.fixture(scope="session")
def vllm_world(vllm_gpt2, tmp_path_factory):
    """The PPO test world of tests/ppo/conftest.py (a reward model for a hidden token rule) on vllm_gpt2."""
    from tests.ppo.conftest import train_rule_reward_model

    root = tmp_path_factory.mktemp("vllm-world")
    rm = train_rule_reward_model(vllm_gpt2, root / "rm")
    words = ["hello", "world", "question", "answer", "good", "bad", "fox", "dog", "seal", "bear"]
    prompts = root / "prompts.jsonl"
    with prompts.open("w") as f:
        for i in range(64):
            f.write(json.dumps({"id": f"p-{i:03d}", "prompt": f"{words[i % 10]} {words[(i * 3) % 10]} {i}"}) + "\n")
    return {"policy": str(vllm_gpt2), "reward_model": str(rm), "prompts_file": str(prompts)}
