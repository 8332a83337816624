"""`rlhf ppo`: PPO / PPO-ptx against the reward model (paper section 3.5).

setup -> loop over PPO iterations, each one the algorithm box:
  1. generate a response to each prompt of the batch (KV cache, temperature, top-p)
  2. score: reward model (or a Python reward_fn), policy and reference log-probs, values
  3. per-token rewards: -kl_coef * KL on every token, the score on the last
  4. GAE advantages and returns, advantages whitened
  5. PPO epochs over shuffled mini-batches (clipped policy and value losses)
  6.   + ptx_coef * LM loss on pretraining text in every optimizer step (PPO-ptx)
  7. adapt kl_coef toward the KL target
-> finish: final/ (the policy, a plain transformers folder) and metrics.json.

Shape legend: B episodes, P prompt tokens (left-padded), R response tokens (right-padded), V vocab.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch

from rlhf.config import ConfigError, load_callable
from rlhf.core.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, save_final
from rlhf.core.fsdp import fsdp_enabled, plain_copy, shard, unsharded
from rlhf.core.generate import decode_responses, episode_noise, sample
from rlhf.core.groups import consecutive_groups, length_groups, padding_fraction
from rlhf.core.io import append_jsonl, atomic_write_jsonl
from rlhf.core.models import load_causal_lm, load_tokenizer
from rlhf.core.ops import pad_rows, token_logprobs
from rlhf.core.run import Run, progress
from rlhf.core.streams import run_pieces, streams_available
from rlhf.core.train import (
    Sums, backward_micro_batches, clip_and_step, make_accelerator, make_optimizer, seed_everything,
)
from rlhf.core.vllm_engine import episode_seed
from rlhf.data.pretraining import load_pretrain, step_documents
from rlhf.inputs import check_ppo
from rlhf.ppo.config import PPOConfig
from rlhf.ppo.data import batch_prompt_indices, load_prompts
from rlhf.ppo.loss import (
    KLController, explained_variance, gae, kl_rewards, policy_loss, ppo_ptx_objective, ptx_loss, value_loss,
    whiten_advantages,
)
from rlhf.ppo.models import check_same_tokens, load_models, record_reward
from rlhf.ppo.rollout import PolicyAndValue, Rollout, gather_rollout, score_episodes

log = logging.getLogger("rlhf.ppo")


@dataclass
class UpdateStats(Sums):
    """Sums over the tokens the PPO epochs trained on; each mean is a sum over its own count."""

    policy_loss: float = 0.0
    """Clipped surrogate loss, summed over response tokens."""
    policy_clipped: float = 0.0
    """Response tokens whose ratio was clipped."""
    approx_kl: float = 0.0
    """(ratio - 1) - log ratio, summed over response tokens."""
    policy_tokens: float = 0.0
    """Response tokens the policy trained on (0 during value warm-up)."""
    value_loss: float = 0.0
    """Clipped value loss, summed over response tokens."""
    value_clipped: float = 0.0
    """Response tokens whose value update was clipped."""
    value_tokens: float = 0.0
    """Response tokens the value model trained on."""
    ptx_loss: float = 0.0
    """Next-token NLL summed over pretraining tokens."""
    ptx_tokens: float = 0.0
    """Pretraining target tokens."""

    def metrics(self, ptx: bool) -> dict[str, float]:
        policy, value = max(self.policy_tokens, 1.0), max(self.value_tokens, 1.0)
        out = {"ppo/policy/loss": self.policy_loss / policy, "ppo/value/loss": self.value_loss / value,
               "ppo/policy/clipfrac": self.policy_clipped / policy, "ppo/value/clipfrac": self.value_clipped / value,
               "ppo/policy/approx_kl": self.approx_kl / policy}
        if ptx:
            out["ppo/ptx/loss"] = self.ptx_loss / max(self.ptx_tokens, 1.0)
        return out


@dataclass
class LossNorm:
    """What one mini-batch's token-level losses are divided by: its counts over the global mini-batch, divided
    by the process count because DDP averages gradients over processes."""

    tokens: torch.Tensor | float
    ptx_tokens: float


def main(config: PPOConfig, out: str, resume: bool = False) -> dict[str, float]:
    # --- setup -------------------------------------------------------------------
    accelerator = make_accelerator(config)
    sharded = fsdp_enabled(accelerator)
    if sharded:
        refuse_under_fsdp(config)
    run = Run(out, config, accelerator.is_main_process, resume)
    out = Path(out)
    seed_everything(config.seed)
    device, rank, nproc = accelerator.device, accelerator.process_index, accelerator.num_processes
    accum = accumulation_steps(config, nproc)
    tokenizer = load_tokenizer(config.policy, chat_template=config.chat_template)
    check_ppo(config, tokenizer)  # every input file, before the models load
    pad_id, eos_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    policy, reference, reward_model, value = load_models(config, device)
    # Under FSDP every process must run the same number of forwards of each sharded model (each one gathers
    # weights from all): length groups differ in number per process, consecutive runs of micro_batch_size do not.
    by_length = config.group_by_length and not sharded
    check_same_tokens(tokenizer, (reward_model or value).tokenizer, config)
    reward_fn = load_callable(config.reward_fn, "reward_fn") if config.reward_fn else None
    prompts = load_prompts(config.prompts_file, tokenizer, config.max_length - config.max_new_tokens, config.skip_bad_records)
    pretrain = load_pretrain(config.pretrain_file, tokenizer, config.ptx_max_length, config.skip_bad_records) \
        if config.ptx_coef > 0 else []
    net = PolicyAndValue(policy, value)
    if sharded:  # rlhf shards all four models itself (core/fsdp.py); policy and value as one unit tree
        net, reference = shard(net, accelerator), shard(reference, accelerator)
        # FSDP warns that the values and ptx logits it returns are slices, whose in-place change would skip a
        # gather; nothing changes them in place (ppo/loss.py is pure), and a copy of the ptx logits costs memory.
        warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module \(FSDPPolicyAndValue\) returned a view")
        reward_model = shard(reward_model, accelerator, forward_methods=("values",)) if reward_model else None
    optimizer, scheduler = make_optimizer(net, config, config.iterations)  # lr anneals once per PPO iteration
    if sharded:
        optimizer = accelerator.prepare(optimizer)
    else:
        net, optimizer = accelerator.prepare(net, optimizer)
    model = accelerator.unwrap_model(net)
    kl_ctl = KLController(config.kl_coef, config.kl_target, config.kl_horizon)
    sampler = make_sampler(config)
    # vLLM pins this process's OpenMP threads and turns torch.set_num_threads into a no-op, so the
    # one-thread-per-core split of side_by_side cannot be had next to it.
    side_by_side = config.side_by_side and sampler is None and streams_available(device, nproc)
    log.info("PPO: %d prompts, %d iterations of %d episodes, %d mini-batches x %d epochs, %d micro-batches of %d "
             "per optimizer step on each of %d processes%s", len(prompts.ids), config.iterations, config.batch_size,
             config.batch_size // config.mini_batch_size, config.ppo_epochs, accum, config.micro_batch_size, nproc,
             f", ptx_coef {config.ptx_coef} on {len(pretrain)} documents" if pretrain else "")
    if sharded and config.group_by_length:
        log.info("FSDP: group_by_length is off, so that every process runs the same number of forwards")

    step, opt_steps, score_history, last_ckpt = 0, 0, [], None
    if resume and (ckpt := latest_checkpoint(out)) is not None:
        state = load_checkpoint(ckpt, {"policy": model.policy, "value": model.value},
                                {"optimizer": optimizer, "scheduler": scheduler}, accelerator)
        step, opt_steps, score_history, last_ckpt = state["step"], state["opt_steps"], state["scores"], str(ckpt)
        kl_ctl.load_state_dict(state["kl_ctl"])
        run.truncate_history(step)
        truncate_samples(out / "samples.jsonl", step, accelerator.is_main_process)
        log.info("resumed from %s (iteration %d)", ckpt, step)

    # --- loop --------------------------------------------------------------------
    bar = progress(config.iterations, "ppo", disable=not accelerator.is_main_process, initial=step)
    total_episodes, total_s = 0, 0.0
    while step < config.iterations:
        t0 = time.time()
        batch_idx = batch_prompt_indices(len(prompts.ids), config.batch_size, config.seed, step)
        per_proc = config.batch_size // nproc
        mine = range(rank * per_proc, (rank + 1) * per_proc)  # this process's episodes of the global batch
        episode_ids = [step * config.batch_size + i for i in mine]
        model.eval()  # sampling uses the KV cache, which gradient checkpointing turns off in train mode
        # 1. generate
        episode_prompts = [prompts.ids[batch_idx[i]] for i in mine]
        if sampler is not None:
            sampler.load_weights(model.policy)  # the weights of the last update (or of the checkpoint resumed)
            prompt_ids, prompt_mask, response_ids, response_mask = sampler.sample(
                episode_prompts, [episode_seed(config.seed, e) for e in episode_ids], config.max_new_tokens,
                config.temperature, config.top_p, eos_id, pad_id, device)  # (b, P), (b, P), (b, R), (b, R)
        else:
            # Each process stops when its own responses end, so it samples from the gathered policy.
            with accelerator.autocast(), unsharded(net, part=model.policy):
                noise = episode_noise(config.seed, episode_ids, config.max_new_tokens)  # (b, R)
                prompt_ids, prompt_mask, response_ids, response_mask = sample(
                    model.policy, episode_prompts, noise, config.temperature, config.top_p, eos_id, pad_id)
        t_gen = time.time()
        # 2. score: reward model, policy and reference log-probs, values
        groups = episode_groups(config, prompt_mask, response_mask, by_length)
        scored = score_episodes(model, reference, reward_model, prompt_ids, prompt_mask, response_ids, response_mask,
                                config.temperature, groups, accelerator.autocast, side_by_side)
        if reward_fn is not None:
            scored["scores"] = python_rewards(reward_fn, config.reward_fn, [prompts.records[batch_idx[i]] for i in mine],
                                              tokenizer, response_ids, response_mask)
        rollout = gather_rollout(Rollout(torch.tensor(episode_ids, device=device), prompt_ids, prompt_mask,
                                         response_ids, response_mask, **scored), accelerator, pad_id)
        # 3. per-token rewards: KL penalty on every token, the (penalised) score on the last
        mask = rollout.response_mask.float()  # (B, R)
        has_eos = (rollout.response_ids == eos_id).any(-1)  # (B,)
        scores = rollout.scores - config.no_eos_penalty * (~has_eos).float()  # (B,)
        rewards, kl = kl_rewards(scores, rollout.logprobs, rollout.ref_logprobs, mask, kl_ctl.value)  # (B, R) each
        if config.whiten_rewards:
            rewards = whiten_advantages(rewards, mask)  # details checklist: scale only, zeros stay zeros
        # 4. GAE, then whitened advantages
        advantages, returns = gae(rewards, rollout.values, mask, config.gamma, config.gae_lambda)  # (B, R) each
        rollout = replace(rollout, advantages=whiten_advantages(advantages, mask), returns=returns)
        t_score = time.time()
        # 5-6. PPO epochs over shuffled mini-batches, each one optimizer step with the ptx term
        model.train()
        train_policy = step >= config.value_warmup_iterations  # value warm-up: the value model learns alone
        forwards = training_forwards(net, model, train_policy, side_by_side, one_process=nproc == 1)
        n_mini = config.batch_size // config.mini_batch_size
        stats, epochs_done, stop = UpdateStats(), 0.0, False
        for epoch in range(config.ppo_epochs):
            seed = config.seed * 7919 + step * 131 + epoch  # the same order on every process
            order = torch.randperm(config.batch_size, generator=torch.Generator().manual_seed(seed)).tolist()
            for m in range(n_mini):
                mini = order[m * config.mini_batch_size : (m + 1) * config.mini_batch_size]
                micro = micro_batches(config, rank, nproc, rollout, mini, by_length)
                ptx, ptx_tokens = ptx_chunks(config, pretrain if train_policy else [], opt_steps, rank, nproc, len(micro))
                norm = LossNorm(rollout.response_mask[mini].sum().float() / nproc, max(ptx_tokens, 1) / nproc)

                def loss_fn(net_, batch, norm=norm):
                    return minibatch_loss(config, net_, rollout, batch, norm, pad_id)

                mb_stats = backward_parts(forwards, list(zip(micro, ptx)), loss_fn, accelerator, opt_steps, last_ckpt)
                if not train_policy:  # DDP needs the joint backward; the policy keeps its weights all the same
                    model.policy.zero_grad(set_to_none=True)
                grad_norm = clip_and_step(accelerator, net, optimizer, None, config.max_grad_norm)
                opt_steps += 1
                mb_stats = mb_stats.reduced(accelerator)
                stats += mb_stats
                epochs_done += 1 / n_mini
                if config.early_stop_kl > 0 and mb_stats.approx_kl / max(mb_stats.policy_tokens, 1) > config.early_stop_kl:
                    stop = True  # this mini-batch moved the policy too far: leave the rest of the batch
                    break
            if stop:
                break
        scheduler.step()
        t_train = time.time()
        # 7. adapt kl_coef to the KL of this batch (Ziegler et al. 2019)
        kl_per_episode = kl.sum(-1)  # (B,)
        metrics = rollout_metrics(rollout, scores, kl_per_episode, kl_ctl.value, mask, has_eos)
        kl_ctl.update(metrics["objective/kl"], config.batch_size)
        step += 1
        bar.update(1)

        # --- log, checkpoint ----------------------------------------------------------
        score_history.append(metrics["objective/scores"])
        total_episodes += config.batch_size
        total_s += t_train - t0
        metrics.update(stats.metrics(ptx=bool(pretrain)))
        metrics.update(iteration_metrics(config, (t0, t_gen, t_score, t_train), int(mask.sum()), groups, prompt_mask,
                                         response_mask))
        metrics.update({"objective/kl_coef_next": kl_ctl.value, "ppo/epochs": round(epochs_done, 4),
                        "train/grad_norm": grad_norm, "train/lr": scheduler.get_last_lr()[0]})
        if step % config.logging_steps == 0 or step == config.iterations:
            run.log(step, metrics)
            if accelerator.is_main_process and config.log_samples > 0:
                shown = write_samples(out / "samples.jsonl", tokenizer, prompts, batch_idx, rollout, scores,
                                      kl_per_episode, step, config.log_samples)
                run.writer.add_text("samples", "\n\n".join(
                    f"**{r['prompt']}** -> {r['response']} (score {r['reward']}, KL {r['kl']})" for r in shown), step)
            bar.set_postfix(score=f"{metrics['objective/scores']:.3f}", kl=f"{metrics['objective/kl']:.2f}",
                            ep_s=f"{metrics['ppo/episodes_per_s']:.1f}", tok_s=f"{metrics['ppo/gen_tokens_per_s']:.0f}",
                            gen=f"{metrics['time/generation_frac']:.0%}")
        if config.save_steps and step % config.save_steps == 0 and step < config.iterations:
            last_ckpt = str(save_checkpoint(
                out, step, {"policy": model.policy, "value": model.value}, {"optimizer": optimizer, "scheduler": scheduler},
                {"opt_steps": opt_steps, "scores": score_history, "kl_ctl": kl_ctl.state_dict()}, accelerator,
                keep=config.keep_checkpoints))
    bar.close()
    if sampler is not None:
        sampler.close()

    # --- finish ------------------------------------------------------------------
    final_policy = model.policy
    if sharded:  # a plain copy for the main process to save (core/fsdp.py)
        final_policy = plain_copy(model.policy, lambda: load_causal_lm(config.policy, dropout=0.0))
    if accelerator.is_main_process:
        save_final(final_policy, tokenizer, out)
        record_reward(config, out / "final")
    accelerator.wait_for_everyone()
    final = run.latest_metrics()
    tenth = max(1, round(0.1 * len(score_history)))
    final["ppo/reward_first"] = sum(score_history[:tenth]) / tenth
    final["ppo/reward_last"] = sum(score_history[-tenth:]) / tenth
    if total_s > 0:
        final["ppo/episodes_per_s"] = total_episodes / total_s
    return run.finish(final)


# --- one micro-batch's loss ----------------------------------------------------------------------


def minibatch_loss(config: PPOConfig, net, rollout: Rollout, batch: tuple[list[int], list[list[int]]],
                   norm: LossNorm, pad_id: int) -> tuple[torch.Tensor, UpdateStats]:
    """One micro-batch's share of its mini-batch's loss, and its stat sums. `batch` is (episode indices, pretraining
    documents). Each token-level loss is summed and divided by the mini-batch's count (`norm`), so the shares of all
    micro-batches and processes add up to the mini-batch's loss. `net` returns the outputs of the models it runs (see
    training_forwards) and None for the others: their terms are left out."""
    episodes, docs = batch
    mb = rollout.select(episodes).trimmed()
    ids, mask = torch.cat([mb.prompt_ids, mb.response_ids], 1), torch.cat([mb.prompt_mask, mb.response_mask], 1)  # (b, P+R)
    ptx_ids, ptx_mask = (x.to(ids.device) for x in pad_rows(docs, pad_id)) if docs else (None, None)  # (p, L)
    logits, values, ptx_logits = net(ids, mask, mb.prompt_ids.shape[1], ptx_ids, ptx_mask)  # (b, R, V), (b, R), (p, L-1, V)
    response_mask = mb.response_mask.float()  # (b, R)
    pg = vf = lm = torch.zeros((), device=ids.device)
    stats = UpdateStats()
    if logits is not None:
        new_logprobs = token_logprobs(logits, mb.response_ids, config.temperature)  # (b, R)
        pg, s = policy_loss(new_logprobs, mb.logprobs, mb.advantages, response_mask, config.clip_range, norm.tokens)
        stats += UpdateStats.of(policy_loss=s["loss_sum"], policy_clipped=s["clipped"], approx_kl=s["approx_kl"],
                                policy_tokens=s["tokens"])
    if ptx_logits is not None:
        lm, s = ptx_loss(token_logprobs(ptx_logits, ptx_ids[:, 1:]), ptx_mask[:, 1:], norm.ptx_tokens)
        stats += UpdateStats.of(ptx_loss=s["loss_sum"], ptx_tokens=s["tokens"])
    if values is not None:
        vf, s = value_loss(values, mb.values, mb.returns, response_mask, config.value_clip_range, norm.tokens)
        stats += UpdateStats.of(value_loss=s["loss_sum"], value_clipped=s["clipped"], value_tokens=s["tokens"])
    return ppo_ptx_objective(pg, vf, lm, config.vf_coef, config.ptx_coef), stats


# --- who runs the forwards: the CPU-speed device --------------------------------------------


def training_forwards(net, model: PolicyAndValue, train_policy: bool, side_by_side: bool, one_process: bool) -> list:
    """The forwards whose backwards make one optimizer step's gradients. Normally the joint module as accelerate
    prepared it: DDP syncs both models in its one backward. With `side_by_side` (a CPU, one process), the policy and
    the value model apart, on a core each: they share no weight, so the gradients are the joint backward's. In value
    warm-up on one process, the value model alone (DDP needs the joint module even then)."""
    value_only = partial(model, policy=False)
    if side_by_side:
        return [partial(model, value=False), value_only] if train_policy else [value_only]
    return [value_only] if not train_policy and one_process else [net]


def backward_parts(forwards: list, batches: list, loss_fn, accelerator, opt_step: int, last_ckpt) -> UpdateStats:
    """Forward and backward of every micro-batch through each of `forwards`, side by side when there are two;
    the summed stats."""
    pieces = [lambda f=f: backward_micro_batches(f, batches, loss_fn, accelerator, opt_step, last_ckpt)
              for f in forwards]
    return sum((s for part in run_pieces(*pieces, side_by_side=len(pieces) > 1) for s in part), UpdateStats())


# --- setup and batching -------------------------------------------------------------------------


def refuse_under_fsdp(config: PPOConfig) -> None:
    """What PPO does not do under FSDP, said before any model loads."""
    if config.generation_backend == "vllm":
        raise ConfigError("generation_backend=vllm with FSDP (--use_fsdp) is not supported: the engine would need "
                          "the policy's weights gathered from every process before each rollout, which is not built. "
                          "Use generation_backend=native with FSDP, or vLLM with DDP (docs/engines.md)")


def make_sampler(config: PPOConfig):
    """The vLLM engine of generation_backend=vllm, or None for our own sampler."""
    if config.generation_backend != "vllm":
        return None
    from rlhf.core.vllm_engine import VLLMSampler

    # Built from the policy's folder for its architecture; the weights are replaced before the first rollout.
    return VLLMSampler(config.policy, config.vllm, max_model_len=config.max_length, seed=config.seed)


def accumulation_steps(config: PPOConfig, nproc: int) -> int:
    """Micro-batches per optimizer step on each process; the batch sizes must split evenly over the processes."""
    if config.batch_size % nproc or config.mini_batch_size % (config.micro_batch_size * nproc) or config.ptx_batch_size % nproc:
        raise ConfigError(f"batch_size ({config.batch_size}) and ptx_batch_size ({config.ptx_batch_size}) must be multiples "
                          f"of the process count ({nproc}), and mini_batch_size ({config.mini_batch_size}) of "
                          f"micro_batch_size x processes ({config.micro_batch_size} x {nproc})")
    return config.mini_batch_size // (config.micro_batch_size * nproc)


def python_rewards(fn, spec: str, records: list[dict], tokenizer, response_ids: torch.Tensor,
                   response_mask: torch.Tensor) -> torch.Tensor:
    """fn(records, decoded responses) as a (B,) float tensor, checked: one finite number per episode."""
    texts = decode_responses(tokenizer, response_ids, response_mask)
    scores = list(fn(records, texts))
    if len(scores) != len(texts):
        raise ValueError(f"reward_fn={spec} returned {len(scores)} scores for {len(texts)} responses")
    out = torch.tensor([float(x) for x in scores], dtype=torch.float32, device=response_ids.device)
    if not torch.isfinite(out).all():
        bad = int((~torch.isfinite(out)).nonzero()[0])
        raise ValueError(f"reward_fn={spec} returned {scores[bad]} for prompt {records[bad].get('id', bad)!r}")
    return out


def episode_groups(config: PPOConfig, prompt_mask: torch.Tensor, response_mask: torch.Tensor,
                   by_length: bool) -> list[list[int]]:
    """Row indices of these episodes in forward-sized groups: of similar length with `by_length`
    (group_by_length, off under FSDP), otherwise consecutive runs of micro_batch_size."""
    if not by_length:
        return consecutive_groups(prompt_mask.shape[0], config.micro_batch_size)
    return length_groups(prompt_mask.sum(-1).tolist(), response_mask.sum(-1).tolist(), config.micro_batch_size,
                         config.group_cost_tokens)


def micro_batches(config: PPOConfig, rank: int, nproc: int, rollout: Rollout, mini: list[int],
                  by_length: bool) -> list[list[int]]:
    """This process's micro-batches (episode indices) of one global mini-batch. With `by_length` their number
    can differ between processes: under DDP each process syncs gradients on its own last backward."""
    per_proc = len(mini) // nproc
    mine = mini[rank * per_proc : (rank + 1) * per_proc]
    idx = torch.tensor(mine, device=rollout.prompt_mask.device)
    return [[mine[i] for i in g]
            for g in episode_groups(config, rollout.prompt_mask[idx], rollout.response_mask[idx], by_length)]


def ptx_chunks(config: PPOConfig, pretrain: list[list[int]], opt_step: int, rank: int, nproc: int,
               accum: int) -> tuple[list[list[list[int]]], int]:
    """This process's pretraining sequences for optimizer step `opt_step` in `accum` chunks, one per
    micro-batch (some empty when there are more micro-batches than sequences), and the target-token count
    of the whole global ptx batch."""
    if not pretrain:
        return [[] for _ in range(accum)], 0
    mine, targets = step_documents(pretrain, config.ptx_batch_size, config.seed + 1, opt_step, rank, nproc)
    mine = sorted(mine, key=len)  # similar lengths share a chunk: less padding
    size = -(-len(mine) // accum)
    return [mine[i * size : (i + 1) * size] for i in range(accum)], targets


# --- metrics and samples -------------------------------------------------------------------------


def rollout_metrics(rollout: Rollout, scores, kl_per_episode, kl_coef: float, mask, has_eos) -> dict[str, float]:
    return {
        "objective/scores": float(rollout.scores.mean()),
        "objective/rlhf_reward": float((scores - kl_coef * kl_per_episode).mean()),
        "objective/kl": float(kl_per_episode.mean()),
        "objective/kl_coef": kl_coef,
        "objective/entropy": float(rollout.entropy.mean()),
        "ppo/response_length": float(mask.sum(-1).mean()),
        "ppo/eos_rate": float(has_eos.float().mean()),
        "ppo/value/explained_variance": explained_variance(rollout.values, rollout.returns, mask),
    }


def iteration_metrics(config: PPOConfig, clock: tuple[float, float, float, float], new_tokens: int, groups,
                      prompt_mask, response_mask) -> dict[str, float]:
    """Where this iteration's time went, from the clock readings (start, generated, scored, trained)."""
    t0, t_gen, t_score, t_train = clock
    return {
        "ppo/episodes_per_s": config.batch_size / (t_train - t0),
        "ppo/gen_tokens_per_s": new_tokens / max(t_gen - t0, 1e-9),
        "time/generation_s": t_gen - t0, "time/scoring_s": t_score - t_gen, "time/training_s": t_train - t_score,
        "time/generation_frac": (t_gen - t0) / (t_train - t0),
        "ppo/padding_frac": padding_fraction(groups, prompt_mask.sum(-1).tolist(), response_mask.sum(-1).tolist()),
    }


def write_samples(path: Path, tokenizer, prompts, batch_idx, rollout, scores, kl, step: int, n: int) -> list[dict]:
    """Append a few decoded episodes with their score and KL (formats: samples, plus step and kl); returns them."""
    rows = []
    responses = decode_responses(tokenizer, rollout.response_ids[:n], rollout.response_mask[:n])
    for b, response in enumerate(responses):
        record = prompts.records[batch_idx[b]]
        rows.append({"prompt_id": record.get("id"), "prompt": record["prompt"], "model": f"ppo-step-{step}",
                     "response": response, "reward": round(float(scores[b]), 4), "kl": round(float(kl[b]), 4),
                     "step": step})
    append_jsonl(path, rows)
    return rows


def truncate_samples(path: Path, step: int, is_main: bool) -> None:
    """On resume, forget samples logged after the checkpoint (those iterations are redone)."""
    if is_main and path.exists():
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        atomic_write_jsonl(path, [r for r in rows if r.get("step", 0) <= step])
