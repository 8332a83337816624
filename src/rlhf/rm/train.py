"""`rlhf rm`: train the reward model on K-way rankings (paper section 3.5).

setup -> loop (one optimizer step = one global batch of prompts, accumulated over
micro-batches) -> evaluate each epoch -> normalise (reference set scores mean 0)
-> final/.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from rlhf.core.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from rlhf.core.fsdp import is_sharded, plain_copy, unsharded
from rlhf.core.groups import GroupedForward
from rlhf.core.reward import RewardModel, reward_model_from_lm
from rlhf.core.run import Run, progress, progress_iter
from rlhf.core.train import (
    Sums, accumulation_steps, backward_micro_batches, clip_and_step, epoch_order, make_accelerator, plan_steps, prepare,
    seed_everything, step_indices, uses_side_by_side,
)
from rlhf.data import read_records
from rlhf.inputs import check_rm
from rlhf.rm.config import RMConfig
from rlhf.rm.data import Ranking, RankingBatch, collate_rankings, load_rankings
from rlhf.rm.loss import ranking_loss

log = logging.getLogger("rlhf.rm")


@dataclass
class RankingSums(Sums):
    """Sums over the rankings trained on (or evaluated)."""

    loss_sum: float = 0.0
    """Each prompt's mean pair loss, summed over prompts."""
    prompts: float = 0.0
    """Rankings (prompts)."""
    pairs: float = 0.0
    """(better, worse) pairs the rankings yield."""
    correct: float = 0.0
    """Pairs scored the right way round (a tie counts half)."""
    margin_sum: float = 0.0
    """r_better - r_worse, summed over pairs."""

    def metrics(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}/loss": self.loss_sum / max(self.prompts, 1.0),
                f"{prefix}/accuracy": self.correct / max(self.pairs, 1.0),
                f"{prefix}/margin": self.margin_sum / max(self.pairs, 1.0)}


def main(config: RMConfig, out: str, resume: bool = False) -> dict[str, float]:
    # --- setup -------------------------------------------------------------------
    accelerator = make_accelerator(config)
    run = Run(out, config, accelerator.is_main_process, resume)
    out = Path(out)
    seed_everything(config.seed)
    device, rank, nproc = accelerator.device, accelerator.process_index, accelerator.num_processes
    check_rm(config)  # every input file, norm_file too, before the model loads
    model = reward_model_from_lm(
        config.model, dropout=None if config.dropout < 0 else config.dropout,
        gradient_checkpointing=config.gradient_checkpointing, lora=config.lora, seed=config.seed,
        chat_template=config.chat_template,
    )
    tokenizer = model.tokenizer
    train = load_rankings(config.train_file, tokenizer, config.max_length, config.skip_bad_records)
    evals = load_rankings(config.eval_file, tokenizer, config.max_length, config.skip_bad_records) if config.eval_file else []
    accum = accumulation_steps(config, nproc)
    per_epoch, total_steps = plan_steps(config, len(train))
    # The collator cuts each micro-batch's rows into length groups; GroupedForward runs them in one call, so DDP
    # (or FSDP's root unit) sees one forward per backward.
    net, optimizer, scheduler = prepare(accelerator, GroupedForward(model), config, total_steps)
    side_by_side = uses_side_by_side(config, accelerator)
    pad_id = tokenizer.pad_token_id
    log.info("RM: %d train / %d eval rankings (%d pairs), %d steps (%d per epoch), %d micro-batches of %d per step",
             len(train), len(evals), sum(len(r.pairs) for r in train), total_steps, per_epoch, accum,
             config.micro_batch_size)

    step, last_ckpt = 0, None
    if resume and (ckpt := latest_checkpoint(out)) is not None:
        state = load_checkpoint(ckpt, {"model": model}, {"optimizer": optimizer, "scheduler": scheduler}, accelerator)
        step, last_ckpt = state["step"], str(ckpt)
        run.truncate_history(step)
        log.info("resumed from %s (step %d)", ckpt, step)

    # --- loop --------------------------------------------------------------------
    bar = progress(total_steps, "rm", disable=not accelerator.is_main_process, initial=step)
    window, window_s, total_pairs, total_s = RankingSums(), 0.0, 0.0, 0.0
    cost = group_cost(config, net)  # once: whether the model is sharded does not change in the loop
    net.train()
    while step < total_steps:
        t0 = time.time()
        epoch, step_in_epoch = divmod(step, per_epoch)
        order = epoch_order(len(train), config.seed, epoch)
        micro = step_indices(order, step_in_epoch, config, rank, nproc)  # this process's micro-batches
        num_prompts = config.batch_size / nproc  # every step holds batch_size prompts; DDP averages over processes

        def loss_fn(net_, idx: list[int]):
            batch = collate_rankings([train[i] for i in idx], pad_id, cost).to(device)
            return forward_loss(net_, batch, num_prompts)

        for stats in backward_micro_batches(net, micro, loss_fn, accelerator, step, last_ckpt, side_by_side):
            window += RankingSums.of(**stats)
        grad_norm = clip_and_step(accelerator, net, optimizer, scheduler, config.max_grad_norm)
        step += 1
        window_s += time.time() - t0
        bar.update(1)

        # --- log, evaluate, checkpoint ---------------------------------------------------
        if step % config.logging_steps == 0 or step == total_steps:
            summed = window.reduced(accelerator)
            total_pairs, total_s = total_pairs + summed.pairs, total_s + window_s
            metrics = {**summed.metrics("train"), "train/lr": scheduler.get_last_lr()[0], "train/grad_norm": grad_norm,
                       "train/epoch": step / per_epoch, "rm/comparisons_per_s": summed.pairs / max(window_s, 1e-9),
                       "rm/rankings_per_s": summed.prompts / max(window_s, 1e-9)}
            run.log(step, metrics)
            bar.set_postfix(loss=f"{metrics['train/loss']:.3f}", acc=f"{metrics['train/accuracy']:.2f}",
                            cmp_s=f"{metrics['rm/comparisons_per_s']:.0f}")
            window, window_s = RankingSums(), 0.0
        epoch_end = step % per_epoch == 0 or step == total_steps
        if epoch_end and evals:
            metrics = evaluate(net, evals, config, accelerator, pad_id)
            run.log(step, metrics)
            log.info("step %d: %s", step, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        if (epoch_end or (config.save_steps and step % config.save_steps == 0)) and step < total_steps:
            last_ckpt = str(save_checkpoint(out, step, {"model": model}, {"optimizer": optimizer, "scheduler": scheduler},
                                            {}, accelerator, keep=config.keep_checkpoints))
    bar.close()

    # --- finish: normalise so the reference set scores mean 0, then save final/ ----
    final_model = model
    if is_sharded(model):  # a plain copy for the main process to score and save (core/fsdp.py)
        final_model = plain_copy(model, lambda: reward_model_from_lm(config.model, dropout=0.0, seed=config.seed,
                                                                     chat_template=config.chat_template))
    offset = float("nan")
    if accelerator.is_main_process:  # only the main process saves, so only it scores the reference set
        offset, source = normalisation_offset(final_model, config)
        final_model.offset.fill_(offset)
        log.info("normalisation: reference mean reward %.4f (%s) is now 0", offset, source)
        final_model.save(out / "final", extra={"offset_source": source, "trained_from": config.model})
    accelerator.wait_for_everyone()
    final = run.latest_metrics()
    if total_s > 0:
        final["rm/comparisons_per_s"] = total_pairs / total_s
    final["rm/eval_accuracy"] = final.get("eval/accuracy", float("nan"))
    final["rm/offset"] = offset
    return run.finish(final)


def forward_loss(net, batch: RankingBatch, num_prompts) -> tuple[torch.Tensor, dict]:
    scores = net(batch.groups, batch.row_position)  # (N,)
    return ranking_loss(scores, batch.pairs, batch.pair_prompt, num_prompts)


def group_cost(config: RMConfig, net=None) -> float | None:
    """Forward rows in length groups, unless turned off, compiled (group shapes would recompile) or sharded:
    under FSDP every process must run the same number of forwards, or their gathers and reduce-scatters pair
    up wrongly and the run hangs (seen: one rank in all_gather, the other in reduce_scatter)."""
    if net is not None and is_sharded(net):
        return None
    return config.group_cost_tokens if config.group_by_length and not config.compile else None


@torch.no_grad()
def evaluate(net, rankings: list[Ranking], config: RMConfig, accelerator, pad_id: int) -> dict[str, float]:
    """Loss (per prompt), pairwise accuracy and mean margin (per pair) over the eval rankings."""
    net.eval()
    total = RankingSums()
    chunks = [rankings[i : i + config.micro_batch_size] for i in range(0, len(rankings), config.micro_batch_size)]
    with unsharded(net):  # under FSDP the processes may hold different numbers of chunks
        for chunk in progress_iter(chunks[accelerator.process_index :: accelerator.num_processes], "eval", min_items=50):
            batch = collate_rankings(chunk, pad_id, group_cost(config)).to(accelerator.device)
            with accelerator.autocast():
                _, stats = forward_loss(net, batch, 1)
            total += RankingSums.of(**stats)
    net.train()
    return total.reduced(accelerator).metrics("eval")


@torch.no_grad()
def normalisation_offset(model: RewardModel, config: RMConfig) -> tuple[float, str]:
    """Mean raw reward of the reference set: the demonstrations of norm_file (the paper), else
    every response of the training rankings."""
    if config.norm_file:
        records = read_records(config.norm_file, "demonstration", skip_bad_records=config.skip_bad_records)
        prompts = [r["prompt"] for r in records][: config.norm_max_records]
        responses = [r["response"] for r in records][: config.norm_max_records]
        source = config.norm_file
    else:
        records = read_records(config.train_file, "comparison", skip_bad_records=config.skip_bad_records)
        prompts = [r["prompt"] for r in records for _ in r["responses"]][: config.norm_max_records]
        responses = [x for r in records for x in r["responses"]][: config.norm_max_records]
        source = f"responses of {config.train_file}"
    model.offset.zero_()
    scores = model.score(prompts, responses, batch_size=config.micro_batch_size * 4, max_length=config.max_length)
    return sum(scores) / len(scores), source
