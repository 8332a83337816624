"""`rlhf rm`: train the reward model on K-way rankings (paper section 3.5).

setup -> loop (one optimizer step = one global batch of prompts, accumulated over
micro-batches) -> evaluate each epoch -> normalise (reference set scores mean 0)
-> final/.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from rlhf.core.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from rlhf.core.fsdp import is_sharded, plain_copy, unsharded
from rlhf.core.reward import RewardModel, reward_model_from_lm
from rlhf.core.run import Run, progress, progress_iter
from rlhf.core.train import (
    accumulation_steps, backward_micro_batches, clip_and_step, epoch_order, halves, make_accelerator, plan_steps,
    prepare, seed_everything, step_indices, uses_side_by_side,
)
from rlhf.data import read_records
from rlhf.inputs import check_rm
from rlhf.rm.config import RMConfig
from rlhf.rm.data import Ranking, collate_rankings, load_rankings
from rlhf.rm.loss import ranking_loss

log = logging.getLogger("rlhf.rm")


def forward_loss(net, batch: dict, num_prompts) -> tuple[torch.Tensor, dict]:
    scores = net(batch["input_ids"], batch["attention_mask"], batch.get("row_group"))  # (N,)
    return ranking_loss(scores, batch["pairs"], batch["pair_prompt"], num_prompts)


def group_cost(config: RMConfig, net=None) -> float | None:
    """Forward rows in length groups, unless turned off, compiled (group shapes would recompile) or sharded:
    under FSDP every process must run the same number of forwards, or their gathers and reduce-scatters pair
    up wrongly and the run hangs (seen: one rank in all_gather, the other in reduce_scatter)."""
    if net is not None and is_sharded(net):
        return None
    return config.group_cost_tokens if config.group_by_length and not config.compile else None


def _zero_stats(device) -> torch.Tensor:
    return torch.zeros(5, device=device)  # loss_sum, prompts, pairs, correct, margin_sum


def _add(total: torch.Tensor, stats: dict) -> torch.Tensor:
    return total + torch.tensor([float(stats["loss_sum"]), stats["prompts"], stats["pairs"],
                                 float(stats["correct"]), float(stats["margin_sum"])], device=total.device)


def _summary(total: torch.Tensor, prefix: str) -> dict[str, float]:
    loss_sum, prompts, pairs, correct, margin = total.tolist()
    return {f"{prefix}/loss": loss_sum / max(prompts, 1), f"{prefix}/accuracy": correct / max(pairs, 1),
            f"{prefix}/margin": margin / max(pairs, 1)}


@torch.no_grad()
def evaluate(net, rankings: list[Ranking], config: RMConfig, accelerator, pad_id: int) -> dict[str, float]:
    """Loss (per prompt), pairwise accuracy and mean margin (per pair) over the eval rankings."""
    net.eval()
    total = _zero_stats(accelerator.device)
    chunks = [rankings[i : i + config.micro_batch_size] for i in range(0, len(rankings), config.micro_batch_size)]
    mine = chunks[accelerator.process_index :: accelerator.num_processes]
    with unsharded(net):  # under FSDP the processes may hold different numbers of chunks
        for chunk in progress_iter(mine, "eval", min_items=50):
            batch = {k: v.to(accelerator.device) for k, v in collate_rankings(chunk, pad_id, group_cost(config)).items()}
            with accelerator.autocast():
                _, stats = forward_loss(net, batch, 1)
            total = _add(total, stats)
    net.train()
    return _summary(accelerator.reduce(total, "sum"), "eval")


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


def main(config: RMConfig, out: str, resume: bool = False) -> dict[str, float]:
    # --- setup -------------------------------------------------------------------
    accelerator = make_accelerator(config)
    run = Run(out, config, accelerator.is_main_process, resume)
    out = Path(out)
    seed_everything(config.seed)
    check_rm(config)  # every input file, norm_file too, before the model loads
    model = reward_model_from_lm(
        config.model, dropout=None if config.dropout < 0 else config.dropout,
        gradient_checkpointing=config.gradient_checkpointing, lora=config.lora, seed=config.seed,
        chat_template=config.chat_template,
    )
    tokenizer = model.tokenizer
    train = load_rankings(config.train_file, tokenizer, config.max_length, config.skip_bad_records)
    evals = load_rankings(config.eval_file, tokenizer, config.max_length, config.skip_bad_records) if config.eval_file else []
    accum = accumulation_steps(config, accelerator.num_processes)
    per_epoch, total_steps = plan_steps(config, len(train))
    net, optimizer, scheduler = prepare(accelerator, model, config, total_steps)
    side_by_side = uses_side_by_side(config, accelerator)
    pad_id = tokenizer.pad_token_id
    log.info("RM: %d train / %d eval rankings (%d pairs), %d steps (%d per epoch), %d micro-batches of %d per step",
             len(train), len(evals), sum(len(r.pairs) for r in train), total_steps, per_epoch, accum,
             config.micro_batch_size)

    step, last_ckpt = 0, None
    if resume and (ckpt := latest_checkpoint(out)) is not None:
        state = load_checkpoint(ckpt, {"model": accelerator.unwrap_model(net, keep_torch_compile=False)},
                                {"optimizer": optimizer, "scheduler": scheduler}, accelerator)
        step, last_ckpt = state["step"], str(ckpt)
        run.truncate_history(step)
        log.info("resumed from %s (step %d)", ckpt, step)

    # --- loop --------------------------------------------------------------------
    bar = progress(total_steps, "rm", disable=not accelerator.is_main_process, initial=step)
    window, window_start = _zero_stats(accelerator.device), time.time()
    total_pairs, total_time = 0.0, 0.0
    net.train()
    while step < total_steps:
        epoch, step_in_epoch = divmod(step, per_epoch)
        order = epoch_order(len(train), config.seed, epoch)
        micro = step_indices(order, step_in_epoch, config, accelerator.process_index, accelerator.num_processes)
        if side_by_side:  # each micro-batch as two halves (whole prompts each), a core each
            micro = halves(micro)
        batches = [{k: v.to(accelerator.device)
                    for k, v in collate_rankings([train[i] for i in idx], pad_id, group_cost(config, net)).items()}
                   for idx in micro]
        # Every step holds exactly batch_size prompts; DDP averages gradients over processes.
        num_prompts = config.batch_size / accelerator.num_processes
        for stats in backward_micro_batches(net, batches, lambda n, b: forward_loss(n, b, num_prompts), accelerator,
                                            step, last_ckpt, side_by_side):
            window = _add(window, stats)
        grad_norm = clip_and_step(accelerator, net, optimizer, scheduler, config.max_grad_norm)
        step += 1
        bar.update(1)

        if step % config.logging_steps == 0 or step == total_steps:
            elapsed = time.time() - window_start
            summed = accelerator.reduce(window, "sum")
            total_pairs += summed[2].item()
            total_time += elapsed
            metrics = {**_summary(summed, "train"), "train/lr": scheduler.get_last_lr()[0], "train/grad_norm": grad_norm,
                       "train/epoch": step / per_epoch, "rm/comparisons_per_s": summed[2].item() / max(elapsed, 1e-9),
                       "rm/rankings_per_s": summed[1].item() / max(elapsed, 1e-9)}
            run.log(step, metrics)
            bar.set_postfix(loss=f"{metrics['train/loss']:.3f}", acc=f"{metrics['train/accuracy']:.2f}",
                            cmp_s=f"{metrics['rm/comparisons_per_s']:.0f}")
            window, window_start = _zero_stats(accelerator.device), time.time()

        epoch_end = step % per_epoch == 0 or step == total_steps
        if epoch_end and evals:
            metrics = evaluate(net, evals, config, accelerator, pad_id)
            run.log(step, metrics)
            log.info("step %d: %s", step, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
            window_start = time.time()
        if (epoch_end or (config.save_steps and step % config.save_steps == 0)) and step < total_steps:
            last_ckpt = str(save_checkpoint(out, step, {"model": accelerator.unwrap_model(net, keep_torch_compile=False)},
                                            {"optimizer": optimizer, "scheduler": scheduler}, {}, accelerator,
                                            keep=config.keep_checkpoints))
            window_start = time.time()
    bar.close()

    # --- finish: normalise so the reference set scores mean 0, then save final/ ----
    final_model = accelerator.unwrap_model(net, keep_torch_compile=False)
    if is_sharded(final_model):  # a plain copy for the main process to score and save (core/fsdp.py)
        final_model = plain_copy(final_model, lambda: reward_model_from_lm(config.model, dropout=0.0, seed=config.seed))
    offset = float("nan")
    if accelerator.is_main_process:  # only the main process saves, so only it scores the reference set
        offset, source = normalisation_offset(final_model, config)
        final_model.offset.fill_(offset)
        log.info("normalisation: reference mean reward %.4f (%s) is now 0", offset, source)
        final_model.save(out / "final", extra={"offset_source": source, "trained_from": config.model})
    accelerator.wait_for_everyone()
    final = {k: v for h in run.history for k, v in h.items() if k != "step"}  # latest value of each metric
    if total_time > 0:
        final["rm/comparisons_per_s"] = total_pairs / total_time
    final["rm/eval_accuracy"] = final.get("eval/accuracy", float("nan"))
    final["rm/offset"] = offset
    return run.finish(final)
