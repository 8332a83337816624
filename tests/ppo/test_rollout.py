"""The sampler: inverse-CDF picks by hand, top-p, EOS masks, and responses that depend on
the episode only (not on the batch around it), which resume and multi-process rely on.
Length groups: worked by hand, and scoring in groups equals scoring in one batch."""

import pytest
import torch

from rlhf.core.generate import episode_noise, pick_tokens, response_mask_from, sample
from rlhf.core.groups import length_groups, padding_fraction
from rlhf.core.lm import response_logits
from rlhf.core.models import load_causal_lm, load_tokenizer
from rlhf.core.reward import reward_model_from_lm
from rlhf.ppo.rollout import PolicyAndValue, Reference, score_episodes


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


def test_length_groups_by_hand():
    prompts, responses = [10, 2, 9, 3], [4, 4, 4, 4]  # sorted by total length: episodes 1, 3, 2, 0
    # one group: 4 x (10 + 4) + 5 = 61; {1, 3} {2, 0}: 2 x 7 + 2 x 14 + 2 x 5 = 52; three groups: 56 at best
    assert length_groups(prompts, responses, max_size=4, cost=5) == [[1, 3], [2, 0]]
    # a forward costing 20 tokens: one group (76) beats two (82)
    assert length_groups(prompts, responses, max_size=4, cost=20) == [[1, 3, 2, 0]]
    # at most 2 a group: two groups whatever the cost
    assert length_groups(prompts, responses, max_size=2, cost=20) == [[1, 3], [2, 0]]
    # the longest prompt and the longest response of a group both count: 2 x (5 + 9) = 28 > 6 + 14
    assert length_groups([5, 5], [1, 9], max_size=2, cost=0) == [[0], [1]]
    # one group of rows (2 + 3) and (4 + 1): 2 x (4 + 3) = 14 computed, 10 real
    assert padding_fraction([[0, 1]], [2, 4], [3, 1]) == pytest.approx(4 / 14)
    assert padding_fraction([[0], [1]], [2, 4], [3, 1]) == 0


def test_scoring_in_length_groups_equals_one_batch(policy, tiny_gpt2):
    model, tok = policy
    reward = reward_model_from_lm(str(tiny_gpt2), seed=1).eval()
    value = reward_model_from_lm(str(tiny_gpt2), seed=2).eval()
    texts = ["hello", "a model follows the instruction and answers the question", "fox", "the dog and the seal"]
    prompts = [tok(t)["input_ids"] for t in texts]
    batch = sample(model, prompts, episode_noise(5, [0, 1, 2, 3], 10), 1.0, 1.0, tok.eos_token_id, tok.pad_token_id)
    lens = batch[1].sum(-1).tolist(), batch[3].sum(-1).tolist()
    groups = length_groups(*lens, max_size=4, cost=0)
    assert len(groups) > 1
    whole, grouped = (score_episodes(PolicyAndValue(model, value), Reference(model), reward, *batch, 1.0, g) for g in ([[0, 1, 2, 3]], groups))
    mask = batch[3].float()
    for key in ("logprobs", "ref_logprobs", "values"):
        torch.testing.assert_close(grouped[key] * mask, whole[key] * mask, atol=1e-5, rtol=1e-5)
    for key in ("scores", "entropy"):
        torch.testing.assert_close(grouped[key], whole[key], atol=1e-5, rtol=1e-5)
