"""PPO / PPO-ptx math as pure tensor functions: no model, no config, no I/O.

Shape legend: B episodes, R response tokens (right-padded), L pretraining tokens, V vocab. Masks are
True on response tokens up to and including EOS. Token-level losses are summed
and divided by `num_tokens`, the response-token count of the whole global
mini-batch (divided by the process count under DDP), so micro-batches and
processes add up to the global mean exactly, as in SFT.
"""

from __future__ import annotations

import torch

from rlhf.core.ops import masked_mean, masked_whiten


def kl_rewards(
    scores: torch.Tensor,  # (B,) reward model score of each episode
    logprobs: torch.Tensor,  # (B, R) policy log-probs at rollout
    ref_logprobs: torch.Tensor,  # (B, R) reference (SFT) log-probs
    mask: torch.Tensor,  # (B, R)
    kl_coef: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards (lm-human-preferences): -kl_coef * kl on every response token,
    plus the score on the last one. Summed over tokens this is the paper's
    r(x, y) - beta * log(pi_RL(y|x) / pi_SFT(y|x)) (section 3.5). Returns (rewards, kl), (B, R) each."""
    mask = mask.to(logprobs.dtype)
    kl = (logprobs - ref_logprobs) * mask  # (B, R)
    rewards = -kl_coef * kl  # (B, R)
    last = (mask.sum(-1).long() - 1).clamp(min=0)  # (B,) index of the last response token
    rewards[torch.arange(rewards.shape[0], device=rewards.device), last] += scores.to(rewards.dtype)
    return rewards * mask, kl


def gae(
    rewards: torch.Tensor,  # (B, R)
    values: torch.Tensor,  # (B, R) value of the state before each response token
    mask: torch.Tensor,  # (B, R)
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al., 2016); the episode ends after the
    last response token, so the value after it is 0. Returns (advantages, returns), (B, R)."""
    mask = mask.to(values.dtype)
    rewards, values = rewards * mask, values * mask  # padded tail: no reward, no value
    advantages = torch.zeros_like(values)  # (B, R)
    last = torch.zeros_like(values[:, 0])  # (B,)
    R = values.shape[1]
    for t in reversed(range(R)):
        next_value = values[:, t + 1] if t + 1 < R else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * gae_lambda * last
        advantages[:, t] = last
    advantages = advantages * mask
    returns = advantages + values
    return advantages, returns


def whiten_advantages(advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance over the batch's response tokens (details checklist:
    advantage whitening). Padded entries stay 0."""
    return masked_whiten(advantages, mask, shift_mean=True)


def policy_loss(
    new_logprobs: torch.Tensor,  # (B, R) under the policy being trained
    logprobs: torch.Tensor,  # (B, R) at rollout
    advantages: torch.Tensor,  # (B, R)
    mask: torch.Tensor,  # (B, R)
    clip_range: float,
    num_tokens: float | torch.Tensor,
) -> tuple[torch.Tensor, dict]:
    """PPO's clipped surrogate (Schulman et al., 2017, eq. 7), as a loss to minimise.

    stats hold sums over this micro-batch's tokens: clipped (clip fraction numerator) and
    approx_kl, the estimator (ratio - 1) - log ratio (Schulman's "k3": >= 0, unbiased)."""
    mask = mask.to(new_logprobs.dtype)
    log_ratio = (new_logprobs - logprobs) * mask  # (B, R)
    ratio = log_ratio.exp()  # (B, R)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip_range, 1 + clip_range)
    per_token = torch.maximum(unclipped, clipped)  # (B, R)
    loss = (per_token * mask).sum() / num_tokens
    with torch.no_grad():
        stats = {
            "loss_sum": (per_token * mask).sum(),
            "clipped": ((clipped > unclipped).to(mask.dtype) * mask).sum(),
            "approx_kl": (((ratio - 1) - log_ratio) * mask).sum(),
            "tokens": mask.sum(),
        }
    return loss, stats


def value_loss(
    new_values: torch.Tensor,  # (B, R) under the value model being trained
    values: torch.Tensor,  # (B, R) at rollout
    returns: torch.Tensor,  # (B, R)
    mask: torch.Tensor,  # (B, R)
    value_clip_range: float,
    num_tokens: float | torch.Tensor,
) -> tuple[torch.Tensor, dict]:
    """Clipped value loss 0.5 * max((V - R)^2, (V_clip - R)^2), V_clip kept within
    value_clip_range of the rollout value (openai/baselines ppo2, lm-human-preferences)."""
    mask = mask.to(new_values.dtype)
    clipped_values = values + (new_values - values).clamp(-value_clip_range, value_clip_range)
    unclipped_err = (new_values - returns) ** 2
    clipped_err = (clipped_values - returns) ** 2
    per_token = 0.5 * torch.maximum(unclipped_err, clipped_err)  # (B, R)
    loss = (per_token * mask).sum() / num_tokens
    with torch.no_grad():
        stats = {
            "loss_sum": (per_token * mask).sum(),
            "clipped": ((clipped_err > unclipped_err).to(mask.dtype) * mask).sum(),
            "tokens": mask.sum(),
        }
    return loss, stats


def ptx_loss(logprobs: torch.Tensor, mask: torch.Tensor, num_tokens: float | torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Pretraining LM loss: -sum log pi_RL(x_t) / num_tokens over pretraining text
    tokens. logprobs (B, L) of each next token, mask (B, L)."""
    mask = mask.to(logprobs.dtype)
    total = -(logprobs * mask).sum()
    return total / num_tokens, {"loss_sum": total.detach(), "tokens": mask.sum()}


def ppo_ptx_objective(pg_loss: torch.Tensor, vf_loss: torch.Tensor, lm_loss: torch.Tensor | float,
                      vf_coef: float, ptx_coef: float) -> torch.Tensor:
    """The loss one backward sees: the PPO loss for E[r - beta * KL] (the KL is in the
    rewards) plus ptx_coef times the LM loss, i.e. minus gamma * E_pretrain[log pi_RL(x)]
    of the paper's PPO-ptx objective (section 3.5); the value loss trains the separate
    value model and touches no policy weight."""
    return pg_loss + vf_coef * vf_loss + ptx_coef * lm_loss


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(returns - values) / Var(returns) over response tokens: 1 is a perfect
    critic, 0 no better than a constant, negative worse."""
    var_returns = masked_mean((returns - masked_mean(returns, mask)) ** 2, mask)
    err = returns - values
    var_err = masked_mean((err - masked_mean(err, mask)) ** 2, mask)
    return float(1 - var_err / var_returns.clamp(min=1e-8))


class KLController:
    """kl_coef (beta): fixed, or adaptive as in Ziegler et al. (2019), section 2.2:
    beta <- beta * (1 + K_beta * e), e = clip(KL / target - 1, -0.2, 0.2), K_beta = n / horizon,
    with n the episodes in the batch. target <= 0 keeps beta fixed."""

    def __init__(self, kl_coef: float, target: float = 0.0, horizon: int = 10000):
        self.value = float(kl_coef)
        self.target = float(target)
        self.horizon = int(horizon)

    def update(self, kl: float, n_episodes: int) -> float:
        if self.target > 0:
            error = min(max(kl / self.target - 1.0, -0.2), 0.2)
            self.value *= 1.0 + error * n_episodes / self.horizon
        return self.value

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])
