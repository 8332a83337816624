"""generation_backend=vllm: vLLM picks the same greedy tokens as our sampler, follows the policy
after an update (the in-memory weight push), trains PPO as ours does, resumes, and samples eval.

These run where vLLM is installed (.venv-vllm/, built by `bash scripts/setup.sh --vllm`), and
are skipped elsewhere. Each engine start costs ~10-20 s on two cores, so engines are shared."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("vllm")

from rlhf.config import load_config  # noqa: E402
from rlhf.core.generate import VLLMConfig, sample  # noqa: E402
from rlhf.core.models import load_causal_lm, load_tokenizer  # noqa: E402
from rlhf.core.vllm_engine import VLLMSampler  # noqa: E402
from tests.helpers import interrupted_copy  # noqa: E402

pytestmark = pytest.mark.vllm
# float32 so both engines compute the same numbers up to kernel rounding; a small KV cache on a shared machine.
ENGINE = VLLMConfig(dtype="float32", kv_cache_gb=0.25)
TEXTS = ["hello world", "the quick brown fox jumps", "list five ideas for how to regain enthusiasm", "a",
         "write a short story about a bear", "0 1 2 3 4 5 6 7 8 9", "summarize the text in one sentence . yes no"]


def greedy_native(model, tok, prompts: list[list[int]], max_new_tokens: int):
    noise = torch.zeros(len(prompts), max_new_tokens)  # unused at temperature 0
    return sample(model, prompts, noise, 0.0, 1.0, tok.eos_token_id, tok.pad_token_id)


def greedy_vllm(sampler, tok, prompts: list[list[int]], max_new_tokens: int):
    return sampler.sample(prompts, list(range(len(prompts))), max_new_tokens, 0.0, 1.0, tok.eos_token_id,
                          tok.pad_token_id)


@pytest.fixture(scope="module")
def gpt2_engine(vllm_gpt2):
    sampler = VLLMSampler(str(vllm_gpt2), ENGINE, max_model_len=256)
    yield sampler
    sampler.close()


@pytest.mark.parametrize("arch", ["llama", "gpt2"])  # llama first: its engine is closed before the shared one starts
def test_greedy_tokens_equal_our_sampler(arch, vllm_gpt2, vllm_llama, request):
    path = vllm_gpt2 if arch == "gpt2" else vllm_llama
    sampler = request.getfixturevalue("gpt2_engine") if arch == "gpt2" else VLLMSampler(str(path), ENGINE, 256)
    tok, model = load_tokenizer(str(path)), load_causal_lm(str(path)).eval()
    prompts = [tok(t)["input_ids"] for t in TEXTS]
    ours = greedy_native(model, tok, prompts, 24)
    theirs = greedy_vllm(sampler, tok, prompts, 24)
    for name, a, b in zip(("prompt_ids", "prompt_mask", "response_ids", "response_mask"), ours, theirs):
        assert torch.equal(a, b), f"{name} differ:\n{a}\n{b}"
    if arch != "gpt2":
        sampler.close()


def train_towards(model, tok, prompts: list[list[int]], target: int, steps: int = 30) -> None:
    """A few SGD steps that make `target` the likeliest next token after every prompt."""
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    for _ in range(steps):
        for p in prompts:
            logits = model(input_ids=torch.tensor([p])).logits[0, -1]  # (V,)
            loss = torch.nn.functional.cross_entropy(logits[None], torch.tensor([target]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


def test_weight_push_makes_vllm_follow_the_updated_policy(gpt2_engine, vllm_gpt2):
    tok, model = load_tokenizer(str(vllm_gpt2)), load_causal_lm(str(vllm_gpt2)).eval()
    prompts = [tok(t)["input_ids"] for t in TEXTS[:4]]
    gpt2_engine.load_weights(model)
    before = greedy_vllm(gpt2_engine, tok, prompts, 8)[2]
    target = 7
    assert not (before[:, 0] == target).all()
    train_towards(model, tok, prompts, target)
    stale = greedy_vllm(gpt2_engine, tok, prompts, 8)[2]
    assert torch.equal(stale, before), "the engine changed without a push"
    gpt2_engine.load_weights(model)
    after = greedy_vllm(gpt2_engine, tok, prompts, 8)
    assert (after[2][:, 0] == target).all(), after[2]
    for a, b in zip(greedy_native(model, tok, prompts, 8), after):
        assert torch.equal(a, b)


def test_sampling_draws_the_same_tokens_for_the_same_episode_seed(gpt2_engine, vllm_gpt2):
    """An episode's draw depends on its seed, not on the batch it shares: what resume relies on."""
    tok, model = load_tokenizer(str(vllm_gpt2)), load_causal_lm(str(vllm_gpt2)).eval()
    gpt2_engine.load_weights(model)
    prompts = [tok(t)["input_ids"] for t in TEXTS]
    eos, pad = tok.eos_token_id, tok.pad_token_id
    whole = gpt2_engine.sample(prompts, list(range(100, 107)), 12, 1.0, 1.0, eos, pad)[2]
    alone = gpt2_engine.sample(prompts[3:5], [103, 104], 12, 1.0, 1.0, eos, pad)[2]
    other = gpt2_engine.sample(prompts[3:5], [203, 204], 12, 1.0, 1.0, eos, pad)[2]
    assert torch.equal(whole[3:5], alone)
    assert not torch.equal(alone, other)  # temperature 1 on a random model: other seeds draw other tokens


def ppo_args(world: dict, **over) -> list[str]:
    args = {**world, "generation_backend": "vllm", "vllm.dtype": "float32", "vllm.kv_cache_gb": 0.25,
            "batch_size": 16, "mini_batch_size": 8, "micro_batch_size": 8, "max_new_tokens": 8, "max_length": 64,
            "ppo_epochs": 4, "lr": 5e-3, "min_lr_ratio": 1.0, "kl_coef": 0.05, "total_episodes": 192,
            "save_steps": 3, "keep_checkpoints": 10, **over}
    return [f"{k}={v}" for k, v in args.items()]


@pytest.fixture(scope="module")
def vllm_ppo_run(vllm_world, tmp_path_factory, gpt2_engine):
    from rlhf.ppo.config import PPOConfig
    from rlhf.ppo.train import main

    gpt2_engine.close()  # one engine at a time in this process
    out = tmp_path_factory.mktemp("vllm-ppo") / "whole"
    metrics = main(load_config(PPOConfig, None, ppo_args(vllm_world)), str(out))
    return out, metrics


def test_ppo_with_vllm_raises_the_reward(vllm_ppo_run):
    out, metrics = vllm_ppo_run
    # The same bar as the native backend's test on this world (tests/ppo/test_train.py).
    assert metrics["ppo/reward_last"] > metrics["ppo/reward_first"] + 0.25, metrics
    samples = [json.loads(l) for l in (out / "samples.jsonl").read_text().splitlines()]
    assert samples and all(s["response"] is not None for s in samples)


def test_resume_with_vllm_equals_the_uninterrupted_run(vllm_ppo_run, vllm_world, tmp_path):
    from rlhf.ppo.config import PPOConfig
    from rlhf.ppo.train import main

    whole, _ = vllm_ppo_run
    resumed = interrupted_copy(whole, tmp_path / "resumed", checkpoints=2)  # keep steps 3 and 6: resume at 6 of 12
    main(load_config(PPOConfig, None, ppo_args(vllm_world)), str(resumed), resume=True)
    a, b = load_file(str(whole / "final" / "model.safetensors")), load_file(str(resumed / "final" / "model.safetensors"))
    # The resumed run pushes the checkpoint's weights and draws each episode from its own seed, so it
    # samples the same tokens and takes the same steps as the run that never stopped.
    assert max(float((a[k] - b[k]).abs().max()) for k in a) == 0.0
    steps = [json.loads(l)["step"] for l in (resumed / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))


def test_eval_with_vllm_gives_every_model_the_same_random_numbers(vllm_world, tmp_path):
    """Two engines holding the same weights draw the same responses from the same per-prompt seeds:
    eval's common random numbers hold with vLLM, so a copy of the baseline has KL 0 and win rate 0.5.
    (vLLM's draws at T > 0 are its own, so they are not compared with our sampler's.)"""
    from rlhf.eval.config import EvalConfig
    from rlhf.eval.run import main

    copy = tmp_path / "copy"
    shutil.copytree(vllm_world["policy"], copy)
    args = [f"models=[{vllm_world['policy']},{copy}]", "labels=[base,copy]", f"prompts_file={vllm_world['prompts_file']}",
            f"reward_model={vllm_world['reward_model']}", "num_prompts=16", "max_new_tokens=8", "max_length=64",
            "batch_size=8", "num_bootstrap=50", "generation_backend=vllm", "vllm.dtype=float32", "vllm.kv_cache_gb=0.25"]
    metrics = main(load_config(EvalConfig, None, args), str(tmp_path / "eval"))
    rows = [json.loads(l) for l in (tmp_path / "eval" / "samples.jsonl").read_text().splitlines()]
    base, copied = [r for r in rows if r["model"] == "base"], [r for r in rows if r["model"] == "copy"]
    assert [r["response"] for r in base] == [r["response"] for r in copied]
    assert len({r["response"] for r in base}) > 8  # temperature 1: the prompts' seeds draw different responses
    assert metrics["eval/kl/copy"] == pytest.approx(0.0, abs=1e-5)
    assert metrics["eval/winrate/copy"] == pytest.approx(0.5)
