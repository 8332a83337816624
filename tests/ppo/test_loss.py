"""PPO math against numbers worked out by hand (the arithmetic is in each comment)."""

import math

import pytest
import torch

from rlhf.ppo.loss import (
    KLController, explained_variance, gae, kl_rewards, policy_loss, ppo_ptx_objective, ptx_loss, value_loss,
    whiten_advantages,
)


def t(x):
    return torch.tensor(x, dtype=torch.float32)


def test_kl_rewards_put_score_on_last_response_token():
    # kl = [-1 - -1.5, -2 - -1.5, masked] = [0.5, -0.5, 0]; rewards = -0.1 * kl, + score 2 on token 1.
    rewards, kl = kl_rewards(t([2.0]), t([[-1.0, -2.0, -3.0]]), t([[-1.5, -1.5, -9.0]]), t([[1, 1, 0]]), 0.1)
    assert torch.allclose(kl, t([[0.5, -0.5, 0.0]]))
    assert torch.allclose(rewards, t([[-0.05, 2.05, 0.0]]))


def test_gae_full_row():
    # gamma 1, lambda 0.5. t2: delta = 1 - 0.7 = 0.3 -> A = 0.3; t1: delta = 0.7 - 0.6 = 0.1 -> A = 0.1 + 0.5*0.3 = 0.25;
    # t0: delta = 0.6 - 0.5 = 0.1 -> A = 0.1 + 0.5*0.25 = 0.225. returns = A + V.
    adv, ret = gae(t([[0.0, 0.0, 1.0]]), t([[0.5, 0.6, 0.7]]), t([[1, 1, 1]]), gamma=1.0, gae_lambda=0.5)
    assert torch.allclose(adv, t([[0.225, 0.25, 0.3]]))
    assert torch.allclose(ret, t([[0.725, 0.85, 1.0]]))


def test_gae_ignores_the_padded_tail():
    # gamma 0.9, lambda 1, last token padded (its 9s must not leak). t1: delta = 2 + 0 - 1 = 1 -> A = 1;
    # t0: delta = 0 + 0.9*1 - 0.5 = 0.4 -> A = 0.4 + 0.9*1 = 1.3.
    adv, ret = gae(t([[0.0, 2.0, 9.0]]), t([[0.5, 1.0, 9.0]]), t([[1, 1, 0]]), gamma=0.9, gae_lambda=1.0)
    assert torch.allclose(adv, t([[1.3, 1.0, 0.0]]))
    assert torch.allclose(ret, t([[1.8, 2.0, 0.0]]))


def test_whitening_over_response_tokens_only():
    # mean of [1, 2, 3] is 2, unbiased variance 1.
    out = whiten_advantages(t([[1.0, 2.0], [3.0, 100.0]]), t([[1, 1], [1, 0]]))
    assert torch.allclose(out, t([[-1.0, 0.0], [1.0, 0.0]]), atol=1e-6)


@pytest.mark.parametrize("sign,expected,clipped", [(1.0, -0.85, 1.0), (-1.0, 1.15, 1.0)])
def test_clipped_policy_loss(sign, expected, clipped):
    # ratios [1.5, 0.5], clip 0.2. A = +1: max(-1.5, -1.2) + max(-0.5, -0.8) = -1.7, / 2 tokens = -0.85 (first clipped).
    # A = -1: max(1.5, 1.2) + max(0.5, 0.8) = 2.3, / 2 = 1.15 (second clipped).
    new = torch.log(t([[1.5, 0.5]])).requires_grad_()
    loss, stats = policy_loss(new, t([[0.0, 0.0]]), t([[sign, sign]]), t([[1, 1]]), 0.2, 2)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert stats["clipped"].item() == clipped
    # approx KL: (0.5 - ln 1.5) + (-0.5 - ln 0.5) = 0.287682
    assert stats["approx_kl"].item() == pytest.approx(0.5 - math.log(1.5) - 0.5 - math.log(0.5), abs=1e-6)
    loss.backward()
    # The clipped token gets no gradient: that is what the clip is for.
    clipped_token = 0 if sign > 0 else 1
    assert new.grad[0, clipped_token].item() == 0.0 and new.grad[0, 1 - clipped_token].item() != 0.0


def test_clipped_value_loss():
    # V_clip = old + clamp(new - old, +-0.2) = [0.7, 0.3]; errors: unclipped [1, 0.16], clipped [1.69, 0.01];
    # 0.5 * (1.69 + 0.16) / 2 tokens = 0.4625, the first token clipped.
    loss, stats = value_loss(t([[1.0, 0.0]]), t([[0.5, 0.5]]), t([[2.0, 0.4]]), t([[1, 1]]), 0.2, 2)
    assert loss.item() == pytest.approx(0.4625, abs=1e-6)
    assert stats["clipped"].item() == 1.0


def test_ptx_mix_matches_the_paper_objective():
    # LM loss = -(-1 - 2 - 3) / 3 tokens = 2. Total = pg + vf_coef * vf + ptx_coef * lm = 0.5 + 0.1*2 + 0.5*2 = 1.7.
    logprobs = t([[-1.0, -2.0], [-3.0, -50.0]]).requires_grad_()
    lm, stats = ptx_loss(logprobs, t([[1, 1], [1, 0]]), 3)
    assert lm.item() == pytest.approx(2.0)
    total = ppo_ptx_objective(t(0.5), t(2.0), lm, vf_coef=0.1, ptx_coef=0.5)
    assert total.item() == pytest.approx(1.7)
    total.backward()
    # d/d logprob = -gamma / tokens: gradient ascent on gamma * E[log pi(x)].
    assert torch.allclose(logprobs.grad, t([[-0.5 / 3, -0.5 / 3], [-0.5 / 3, 0.0]]))


def test_micro_batches_over_global_token_count_add_up_to_the_global_mean():
    torch.manual_seed(0)
    new, old, adv = torch.randn(4, 5), torch.randn(4, 5), torch.randn(4, 5)
    mask = torch.rand(4, 5) > 0.3
    full, _ = policy_loss(new, old, adv, mask, 0.2, mask.sum())
    parts = sum(policy_loss(new[i:i + 2], old[i:i + 2], adv[i:i + 2], mask[i:i + 2], 0.2, mask.sum())[0] for i in (0, 2))
    assert torch.allclose(full, parts)


def test_explained_variance():
    ret, mask = t([[1.0, 2.0, 3.0]]), t([[1, 1, 1]])
    assert explained_variance(ret, ret, mask) == pytest.approx(1.0)
    assert explained_variance(t([[2.0, 2.0, 2.0]]), ret, mask) == pytest.approx(0.0, abs=1e-6)


def test_adaptive_kl_controller():
    # error = clip(9/6 - 1, +-0.2) = 0.2, K = 100/10000 -> beta * 1.002; KL 3: error -0.2 -> beta * 0.998.
    up = KLController(0.1, target=6.0, horizon=10000)
    assert up.update(9.0, 100) == pytest.approx(0.1002)
    down = KLController(0.1, target=6.0, horizon=10000)
    assert down.update(3.0, 100) == pytest.approx(0.0998)
    fixed = KLController(0.1)
    assert fixed.update(100.0, 100) == 0.1


def test_adaptive_kl_controller_settles_where_kl_meets_the_target():
    """Closed loop on a plant that holds still, KL = 0.08 / beta (more penalty, less KL), one horizon per update.
    The clipped error moves beta 20% a step until the target is within reach, then lands on the beta that gives
    it (0.02 for KL 4). By hand: 0.05 -> 0.04 -> 0.032 -> 0.0256 (error -0.2 each) -> 0.02048 (KL 3.125, error
    -0.219, clipped) -> 0.02048 x (1 + 3.90625 / 4 - 1) = 0.02, where it stays."""
    ctl = KLController(0.05, target=4.0, horizon=16)
    betas = [ctl.update(0.08 / ctl.value, 16) for _ in range(6)]
    assert betas == pytest.approx([0.04, 0.032, 0.0256, 0.02048, 0.02, 0.02], rel=1e-12)
