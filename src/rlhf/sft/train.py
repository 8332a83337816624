"""`rlhf sft`: fine-tune a causal LM on demonstrations (paper section 3.5).

setup -> loop (one optimizer step = one global batch, accumulated over
micro-batches) -> evaluate each epoch and keep the best as final/.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from rlhf.config import ConfigError
from rlhf.core.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, save_final
from rlhf.core.fsdp import is_sharded, plain_copy, unsharded
from rlhf.core.lm import ResponseLM
from rlhf.core.models import load_causal_lm, load_tokenizer
from rlhf.core.run import Run, progress, progress_iter
from rlhf.core.train import (
    Sums, accumulation_steps, backward_micro_batches, clip_and_step, epoch_order, make_accelerator, plan_steps, prepare,
    seed_everything, step_indices, uses_side_by_side,
)
from rlhf.data.pretraining import load_pretrain, step_documents
from rlhf.inputs import check_sft
from rlhf.sft.config import SFTConfig
from rlhf.sft.data import Example, collate_packed, collate_padded, load_examples
from rlhf.sft.loss import sft_loss

log = logging.getLogger("rlhf.sft")


@dataclass
class TokenSums(Sums):
    """Sums over the response tokens trained on (or evaluated)."""

    loss_sum: float = 0.0
    """Next-token NLL summed over response tokens."""
    tokens: float = 0.0
    """Response tokens (the loss's targets)."""
    seen_tokens: float = 0.0
    """Real tokens, prompt and response (and pretraining text), padding excluded: what sft/tokens_per_s counts."""
    ptx_loss_sum: float = 0.0
    """Next-token NLL summed over the pretraining mix's target tokens."""
    ptx_tokens: float = 0.0
    """The pretraining mix's target tokens."""


def main(config: SFTConfig, out: str, resume: bool = False) -> dict[str, float]:
    # --- setup -------------------------------------------------------------------
    accelerator = make_accelerator(config)
    run = Run(out, config, accelerator.is_main_process, resume)
    out = Path(out)
    seed_everything(config.seed)
    device, rank, nproc = accelerator.device, accelerator.process_index, accelerator.num_processes
    tokenizer = load_tokenizer(config.model, chat_template=config.chat_template)
    check_sft(config, tokenizer)  # every input file, before the model loads
    model = load_causal_lm(
        config.model, dropout=None if config.dropout < 0 else config.dropout,
        gradient_checkpointing=config.gradient_checkpointing, lora=config.lora,
    )
    train = load_examples(config.train_file, tokenizer, config.max_length, config.skip_bad_records)
    evals = load_examples(config.eval_file, tokenizer, config.max_length, config.skip_bad_records) if config.eval_file else []
    pretrain = load_pretrain(config.pretrain_file, tokenizer, config.ptx_max_length, config.skip_bad_records) \
        if config.ptx_coef > 0 else []
    if config.ptx_batch_size % nproc and pretrain:
        raise ConfigError(f"ptx_batch_size ({config.ptx_batch_size}) must be a multiple of the {nproc} processes")
    reward_model = None
    if config.reward_model:
        from rlhf.core.reward import load_reward_model

        reward_model = load_reward_model(config.reward_model, device=str(device))
    accum = accumulation_steps(config, nproc)
    per_epoch, total_steps = plan_steps(config, len(train))
    net, optimizer, scheduler = prepare(accelerator, ResponseLM(model), config, total_steps)
    side_by_side = uses_side_by_side(config, accelerator)
    pad_id = tokenizer.pad_token_id
    log.info("SFT: %d train / %d eval examples, %d steps (%d per epoch), %d micro-batches of %d per step per process%s",
             len(train), len(evals), total_steps, per_epoch, accum, config.micro_batch_size,
             f", pretraining mix {config.ptx_coef} x {config.ptx_batch_size} of {len(pretrain)} documents" if pretrain else "")

    step, best, last_ckpt = 0, None, None
    if resume and (ckpt := latest_checkpoint(out)) is not None:
        state = load_checkpoint(ckpt, {"model": accelerator.unwrap_model(net, keep_torch_compile=False)},
                                {"optimizer": optimizer, "scheduler": scheduler}, accelerator)
        step, best, last_ckpt = state["step"], state.get("best"), str(ckpt)
        run.truncate_history(step)
        log.info("resumed from %s (step %d)", ckpt, step)

    # --- loop --------------------------------------------------------------------
    bar = progress(total_steps, "sft", disable=not accelerator.is_main_process, initial=step)
    window, window_s, total_seen, total_s = TokenSums(), 0.0, 0.0, 0.0
    net.train()
    while step < total_steps:
        t0 = time.time()
        epoch, step_in_epoch = divmod(step, per_epoch)
        order = epoch_order(len(train), config.seed, epoch)
        micro = step_indices(order, step_in_epoch, config, rank, nproc)  # this process's micro-batches
        # Normalise by the response tokens of the whole global batch: 2 processes = 1, accumulation = bigger batch.
        local_tokens = sum(len(train[i].response_ids) for idx in micro for i in idx)
        num_tokens = accelerator.reduce(torch.tensor(float(local_tokens), device=device), "sum") / nproc  # DDP averages
        docs, ptx_tokens = pretrain_examples(config, pretrain, step, rank, nproc)
        pool = train + docs  # indices past the demonstrations are this step's pretraining rows, one last micro-batch
        batches = micro + ([list(range(len(train), len(pool)))] if docs else [])

        def loss_fn(net_, idx: list[int]):
            batch = {k: v.to(device) for k, v in collate(config, [pool[i] for i in idx], pad_id).items()}
            if idx[0] < len(train):
                return forward_loss(net_, batch, num_tokens)
            loss, stats = forward_loss(net_, batch, ptx_tokens)
            return config.ptx_coef * loss, {"ptx_loss_sum": stats["loss_sum"], "ptx_tokens": stats["tokens"]}

        for stats in backward_micro_batches(net, batches, loss_fn, accelerator, step, last_ckpt, side_by_side):
            window += TokenSums.of(**stats)
        window += TokenSums(seen_tokens=sum(len(pool[i]) for idx in batches for i in idx))
        grad_norm = clip_and_step(accelerator, net, optimizer, scheduler, config.max_grad_norm)
        step += 1
        window_s += time.time() - t0
        bar.update(1)

        # --- log, evaluate, checkpoint ---------------------------------------------------
        if step % config.logging_steps == 0 or step == total_steps:
            summed = window.reduced(accelerator)
            total_seen, total_s = total_seen + summed.seen_tokens, total_s + window_s
            metrics = {
                "train/loss": summed.loss_sum / max(1.0, summed.tokens),
                "train/lr": scheduler.get_last_lr()[0],
                "train/grad_norm": grad_norm,
                "train/epoch": step / per_epoch,
                "sft/tokens_per_s": summed.seen_tokens / max(window_s, 1e-9),
            }
            if pretrain:
                metrics["train/ptx_loss"] = summed.ptx_loss_sum / max(1.0, summed.ptx_tokens)
            run.log(step, metrics)
            bar.set_postfix(loss=f"{metrics['train/loss']:.3f}", tok_s=f"{metrics['sft/tokens_per_s']:.0f}")
            window, window_s = TokenSums(), 0.0
        epoch_end = step % per_epoch == 0 or step == total_steps
        if epoch_end:
            best = end_of_epoch(config, net, tokenizer, evals, reward_model, accelerator, run, out, step, best)
        if (epoch_end or (config.save_steps and step % config.save_steps == 0)) and step < total_steps:
            last_ckpt = str(save_checkpoint(out, step, {"model": accelerator.unwrap_model(net, keep_torch_compile=False)},
                                            {"optimizer": optimizer, "scheduler": scheduler},
                                            {"best": best}, accelerator, keep=config.keep_checkpoints))
    bar.close()

    # --- finish ------------------------------------------------------------------
    if not evals:  # with evals, end_of_epoch saved the best epoch
        final_model = trained_model(net, config, accelerator)
        if accelerator.is_main_process:
            save_final(final_model, tokenizer, out)
    accelerator.wait_for_everyone()
    final = run.latest_metrics()
    if total_s > 0:
        final["sft/tokens_per_s"] = total_seen / total_s
    final["sft/eval_loss"] = final.get("eval/loss", float("nan"))
    if best is not None:
        final["sft/best_" + config.selected_by.split("/")[1]] = best
    return run.finish(final)


def pretrain_examples(config: SFTConfig, pretrain: list[list[int]], step: int, rank: int,
                      nproc: int) -> tuple[list[Example], float]:
    """This process's share of optimizer step `step`'s pretraining documents, as examples whose "response" is
    all but the first token (the LM loss on the whole text), and the per-process target-token count of the
    whole global batch (DDP averages over processes), which normalises their loss."""
    if not pretrain:
        return [], 0.0
    mine, targets = step_documents(pretrain, config.ptx_batch_size, config.seed + 1, step, rank, nproc)
    return [Example(d[:1], d[1:]) for d in mine], targets / nproc


def collate(config: SFTConfig, examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    if config.packing:
        return collate_packed(examples, pad_id, config.max_length)
    return collate_padded(examples, pad_id)


def forward_loss(net, batch: dict, num_tokens) -> tuple[torch.Tensor, dict]:
    logits = net(batch["input_ids"], batch["attention_mask"], batch["select"], batch.get("position_ids"))  # (N, V)
    return sft_loss(logits, batch["targets"], num_tokens)


def end_of_epoch(config, net, tokenizer, evals, reward_model, accelerator, run, out, step, best):
    """Evaluate, and write final/ when the selection metric improves (paper: pick by validation RM score)."""
    if not evals:
        return best
    metrics = {"eval/loss": evaluate_loss(net, evals, config, accelerator, tokenizer.pad_token_id)}
    final_model = trained_model(net, config, accelerator)
    if reward_model is not None and accelerator.is_main_process:
        metrics["eval/reward"] = evaluate_reward(final_model, tokenizer, config.eval_file, config, reward_model)
    run.log(step, metrics)
    value = metrics.get(config.selected_by, metrics["eval/loss"])
    lower_is_better = config.selected_by == "eval/loss"
    improved = best is None or (value < best if lower_is_better else value > best) or math.isnan(best)
    log.info("step %d: %s", step, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    if improved:
        best = value
        if accelerator.is_main_process:
            save_final(final_model, tokenizer, out)
    accelerator.wait_for_everyone()
    return best


@torch.no_grad()
def evaluate_loss(net, examples: list[Example], config: SFTConfig, accelerator, pad_id: int) -> float:
    """Mean per-token loss over the eval set, each process taking every n-th micro-batch."""
    net.eval()
    total = TokenSums()
    chunks = [examples[i : i + config.micro_batch_size] for i in range(0, len(examples), config.micro_batch_size)]
    with unsharded(net):  # under FSDP the processes may hold different numbers of chunks
        for chunk in progress_iter(chunks[accelerator.process_index :: accelerator.num_processes], "eval", min_items=50):
            batch = {k: v.to(accelerator.device) for k, v in collate(config, chunk, pad_id).items()}
            with accelerator.autocast():
                _, stats = forward_loss(net, batch, 1)
            total += TokenSums.of(**stats)
    total = total.reduced(accelerator)
    net.train()
    return total.loss_sum / max(total.tokens, 1.0)


@torch.no_grad()
def evaluate_reward(model, tokenizer, eval_file: str, config: SFTConfig, reward_model) -> float:
    """Mean reward-model score of greedy responses to the eval prompts (the paper's SFT selection)."""
    from rlhf.core.generate import generate
    from rlhf.core.tokens import encode_prompt
    from rlhf.data import read_records

    records = read_records(eval_file, "demonstration", skip_bad_records=config.skip_bad_records)[: config.eval_reward_prompts]
    prompts = [r["prompt"] for r in records]
    prompt_ids = [encode_prompt(tokenizer, p)[-(config.max_length - config.eval_max_new_tokens):] for p in prompts]
    responses = generate(model, tokenizer, prompt_ids, config.eval_max_new_tokens, do_sample=False)
    texts = [tokenizer.decode(r, skip_special_tokens=True) for r in responses]
    scores = reward_model.score(prompts, texts, max_length=config.max_length)
    return sum(scores) / len(scores)


def trained_model(net, config: SFTConfig, accelerator):
    """The language model being trained, whole: itself, or under FSDP a plain copy of its gathered weights
    (every process calls this; only the main process writes or scores with it)."""
    if not is_sharded(net):
        return accelerator.unwrap_model(net, keep_torch_compile=False).model
    return plain_copy(net, lambda: ResponseLM(load_causal_lm(config.model, dropout=0.0))).model
