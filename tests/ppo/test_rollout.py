"""The sampler: inverse-CDF picks by hand, top-p, EOS masks, and responses that depend on
the episode only (not on the batch around it), which resume and multi-process rely on."""

import pytest
import torch

from rlhf.core.models import load_causal_lm, load_tokenizer
from rlhf.ppo.rollout import episode_noise, pick_tokens, response_logits, response_mask_from, sample


def test_inverse_cdf_pick_by_hand():
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.7]])).repeat(3, 1)
    # cdf [0.1, 0.3, 1.0]: u = 0.05 -> token 0, 0.15 -> 1, 0.5 -> 2
    assert pick_tokens(logits, torch.tensor([0.05, 0.15, 0.5]), 1.0, 1.0).tolist() == [0, 1, 2]
    # top_p 0.7 keeps only the 0.7 token; 0.8 keeps {0.7, 0.2}: u = 0.9 -> 0.81 of 0.9 -> the 0.2 token
    assert pick_tokens(logits, torch.tensor([0.0, 0.5, 0.99]), 1.0, 0.7).tolist() == [2, 2, 2]
    assert pick_tokens(logits[:1], torch.tensor([0.9]), 1.0, 0.8).tolist() == [1]
    # temperature 1000 flattens to ~uniform: u = 0.5 -> the middle token
    assert pick_tokens(logits[:1], torch.tensor([0.5]), 1000.0, 1.0).tolist() == [1]


def test_response_mask_keeps_the_first_eos_only():
    ids = torch.tensor([[5, 2, 9, 2], [5, 6, 7, 8], [2, 1, 1, 1]])  # eos = 2, pad = 1
    assert response_mask_from(ids, eos_id=2, pad_id=1).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]


def test_eos_equal_to_pad_still_counts_as_the_end():
    ids = torch.tensor([[5, 2, 2, 2]])  # a model whose pad token is its EOS
    assert response_mask_from(ids, eos_id=2, pad_id=2).tolist() == [[1, 1, 0, 0]]


@pytest.fixture(scope="module")
def policy(tiny_gpt2):
    return load_causal_lm(str(tiny_gpt2)).eval(), load_tokenizer(str(tiny_gpt2))


def test_an_episode_samples_the_same_alone_or_in_any_batch(policy):
    model, tok = policy
    prompts = [tok("hello world")["input_ids"], tok("a model follows the instruction and answers")["input_ids"],
               tok("fox")["input_ids"]]
    noise = episode_noise(3, [10, 11, 12], 12)
    _, _, batch_ids, batch_mask = sample(model, prompts, noise, 1.0, 1.0, tok.eos_token_id, tok.pad_token_id)
    for b in range(3):
        _, _, one_ids, one_mask = sample(model, prompts[b : b + 1], episode_noise(3, [10 + b], 12), 1.0, 1.0,
                                         tok.eos_token_id, tok.pad_token_id)
        assert torch.equal(one_ids[0][one_mask[0].bool()], batch_ids[b][batch_mask[b].bool()])
    other = sample(model, prompts, episode_noise(4, [10, 11, 12], 12), 1.0, 1.0, tok.eos_token_id, tok.pad_token_id)
    assert not torch.equal(other[2], batch_ids)  # another seed, other responses


def test_sampled_tokens_follow_the_tempered_distribution(policy):
    """The sampler's KV-cache logits equal the full forward's, so the log-probs PPO scores are
    those of the distribution it sampled from; with eos=-1 it runs to max_new_tokens."""
    model, tok = policy
    prompts = [tok("hello world")["input_ids"]] * 64
    prompt_ids, prompt_mask, response_ids, response_mask = sample(
        model, prompts, episode_noise(0, list(range(64)), 2), 2.0, 1.0, -1, tok.pad_token_id)
    assert response_mask.all()
    with torch.no_grad():
        logits = response_logits(model, torch.cat([prompt_ids, response_ids], 1),
                                 torch.cat([prompt_mask, response_mask], 1), prompt_ids.shape[1])  # (B, 2, V)
    first = torch.softmax(logits[0, 0] / 2.0, -1)  # every row has the same prompt
    freq = torch.bincount(response_ids[:, 0], minlength=first.shape[0]).float() / 64
    # The 64 first tokens are draws from softmax(logits / 2): their mean probability under it
    # matches the expected value sum p^2 within sampling noise.
    assert float(first[response_ids[:, 0]].mean()) == pytest.approx(float((first ** 2).sum()), rel=0.5)
    assert freq.max() < 0.5  # temperature 2 on a random model: no token dominates
