"""`rlhf pretrain`: base language models on the world's web text (the "GPT-3" of the demo).

Three sizes spanning ~30x in parameters, each a plain `transformers` GPT-2 (or Llama)
folder trained with the next-token loss on every token of packed pretraining text, as
GPT-3 was. A model is stored under a folder named by the world seed, the size and a
hash of everything that decides its weights (the world's text and vocabulary included),
so a second run (and `rlhf demo`) reuses it instead of training again. The weights are
stored in bf16.

The package ships the three bases of the default world (seed 0) in `rlhf/demo/bases/`,
trained by this command with its defaults, as GPT-3 was given to the paper: the demo uses
them when their folder name (hence the world's hash) matches, and trains its own otherwise.

setup -> per size, in worker processes: reuse a shipped or cached model, or (loop ->
held-out loss -> save to the cache atomically) -> out/models.json and metrics.json.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rlhf.config import require, to_dict
from rlhf.core.io import atomic_replace_dir, atomic_write_json
from rlhf.core.run import Run, progress
from rlhf.core.train import OptimConfig, Sums, check_finite, epoch_order, make_optimizer, seed_everything

log = logging.getLogger("rlhf.pretrain")

# Shapes of the three base models (GPT-2 counting, 602-token vocabulary, 256 positions):
# small 0.10M, medium 0.53M, large 2.85M parameters, so large / small = 29x.
SHAPES = {
    "small": {"n_layer": 2, "d_model": 48, "n_head": 4},
    "medium": {"n_layer": 4, "d_model": 96, "n_head": 4},
    "large": {"n_layer": 6, "d_model": 192, "n_head": 6},
}
# Bump when the training code changes what a config produces, so old caches are not reused.
CACHE_VERSION = 2  # 2: weights stored in bf16
SHIPPED = Path(__file__).parent / "bases"  # the default world's bases, shipped with the package


@dataclass
class PretrainConfig(OptimConfig):
    """Train base causal LMs on the embedded world's pretraining text (cached). Tiny models train well at
    learning rates far above GPT-3's."""

    # pretraining's defaults for the optimizer block's keys (documented there); the cache hash covers them
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.1

    seed: int = 0
    """World seed: the facts, text and tokenizer the models learn (also seeds initialisation and data order)."""
    sizes: list[str] = field(default_factory=lambda: ["small", "medium", "large"])
    """Which sizes to train: small (0.10M parameters), medium (0.53M), large (2.85M)."""
    arch: str = "gpt2"
    """Model shape: gpt2 (learned positions) or llama (rotary positions, RMSNorm, SwiGLU)."""
    documents: int = 400000
    """Pretraining documents drawn from the world (~35 tokens each; 400,000 is about one pass at the default steps);
    the same stream whose first documents `rlhf demo` uses for ptx."""
    heldout_documents: int = 500
    """Documents of the held-out stream on which the final loss is measured."""
    block_size: int = 256
    """Tokens per training row: documents are joined with EOS and cut into rows (also the models' max positions)."""
    batch_size: int = 8
    """Rows per optimizer step."""
    steps: int = 6000
    """Optimizer steps per size (6,000 x 8 x 256 = 12M tokens, the same for every size, as GPT-3 trained every size
    on the same tokens). The default world's shipped bases were trained with these defaults (docs/demo.md)."""
    cache: str = ""
    """Folder of cached base models; empty: $RLHF_CACHE or ~/.cache/rlhf."""
    logging_steps: int = 50
    """Log the training loss every this many steps."""
    save_steps: int = 500
    """Steps between resumable checkpoints of a size in training (`.partial-<name>/` beside its cache folder):
    a killed run continues from the last one, with the weights an unkilled run gets. 0 turns them off."""
    workers: int = 0
    """Worker processes that train sizes side by side, one torch thread each; 0 is one per core."""
    threads: int = 1
    """torch intra-op threads; 0 keeps torch's default. Tiny models gain little from a second thread, and on a
    busy machine two spinning OpenMP threads were measured 14x slower per step than one."""

    def validate(self) -> None:
        self.validate_optim()
        require(bool(self.sizes), "sizes must name at least one size: small, medium, large")
        unknown = [s for s in self.sizes if s not in SHAPES]
        require(not unknown, f"unknown size(s) {unknown}: choose from {list(SHAPES)}")
        require(self.arch in ("gpt2", "llama"), f"arch must be gpt2 or llama, got {self.arch!r}")
        require(self.documents >= 100 and self.heldout_documents >= 10, "documents >= 100 and heldout_documents >= 10")
        require(self.block_size >= 32, "block_size must be at least 32 tokens")
        require(self.batch_size >= 1 and self.steps >= 1, "batch_size and steps must be >= 1")
        require(self.logging_steps >= 1 and self.threads >= 0 and self.workers >= 0 and self.save_steps >= 0,
                "logging_steps >= 1, threads >= 0, workers >= 0 and save_steps >= 0")


@dataclass
class StepSums(Sums):
    """Sums over the optimizer steps of a logging window."""

    loss_sum: float = 0.0
    """Each step's mean next-token loss, summed."""
    steps: float = 0.0
    """Optimizer steps."""


def cache_root(config: PretrainConfig) -> Path:
    if config.cache:
        return Path(config.cache).expanduser()
    return Path(os.environ.get("RLHF_CACHE", "~/.cache/rlhf")).expanduser()


FINGERPRINT_DOCUMENTS = 20000


def world_fingerprint(config: PretrainConfig) -> str:
    """A hash of what the world writes: its vocabulary (the tokenizer) and its pretraining text. A change
    to the world's code changes these without changing any setting, and must not reuse a stale model.
    The first FINGERPRINT_DOCUMENTS documents stand for the whole stream (all of it takes ~15 s to write,
    on every demo start): a change to how the world writes text changes them too."""
    from rlhf.world import World, vocabulary

    world = World(config.seed)
    h = hashlib.sha256("\n".join(sorted(vocabulary())).encode())
    for split, n in (("train", min(config.documents, FINGERPRINT_DOCUMENTS)), ("heldout", config.heldout_documents)):
        h.update("\n".join(world.pretraining_text(n, split=split)).encode())
    return h.hexdigest()[:16]


def cache_dir(config: PretrainConfig, size: str, world: str | None = None) -> Path:
    """world-<seed>-<size>-<hash>: the hash covers every field that changes the weights, and the world's
    text and vocabulary (`world`: its world_fingerprint, when the caller already has it)."""
    decisive = {k: v for k, v in to_dict(config).items()
                if k not in ("sizes", "cache", "logging_steps", "save_steps", "threads", "workers")}
    world = world or world_fingerprint(config)
    key = json.dumps({"version": CACHE_VERSION, "shape": SHAPES[size], "world": world, **decisive}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return cache_root(config) / f"world-{config.seed}-{size}-{digest}"


def pack_blocks(docs: list[str], tokenizer, block_size: int, chunk: int = 20000) -> torch.Tensor:
    """Documents joined with EOS (as GPT's training text is), cut into (N, block_size) rows;
    the last partial row is dropped. Tokenized in chunks into a compact array: 400,000 documents
    as Python lists of ints would take ~0.5 GB."""
    from array import array

    eos = tokenizer.eos_token_id
    stream = array("i")
    for i in range(0, len(docs), chunk):
        for ids in tokenizer(docs[i : i + chunk], add_special_tokens=False)["input_ids"]:
            stream.extend(ids)
            stream.append(eos)
    n = len(stream) // block_size
    if n == 0:
        raise ValueError(f"{len(stream)} tokens of text: fewer than one block of {block_size}")
    return torch.frombuffer(stream, dtype=torch.int32)[: n * block_size].long().view(n, block_size)  # (N, L)


def build_model(config: PretrainConfig, size: str, tokenizer):
    from transformers import AutoModelForCausalLM

    from rlhf.core.tiny import model_config

    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    shape = SHAPES[size]
    mc = model_config(config.arch, len(tokenizer), max_len=config.block_size, **shape, **ids)
    torch.manual_seed(config.seed)
    return AutoModelForCausalLM.from_config(mc, attn_implementation="sdpa")


def block_loss(model, blocks: torch.Tensor, pad_id: int, batch_size: int = 32) -> float:
    """Mean next-token loss (nats) over every token of the blocks: the log of eval's perplexity,
    the one perplexity that eval, the demo and pretraining share."""
    from rlhf.eval.run import perplexity

    was_training = model.training
    model.eval()
    loss = math.log(perplexity(model, blocks.tolist(), pad_id, batch_size))
    model.train(was_training)
    return loss


def partial_dir(path: Path) -> Path:
    """Where a size in training keeps its resumable checkpoint: beside its final cache folder."""
    return path.with_name(f".partial-{path.name}")


def save_partial(partial: Path, model, optimizer, scheduler, step: int, history: list, train_s: float) -> None:
    """The state a resumed run needs to give the same weights (the loop draws no random numbers: the data
    order is a function of the seed and the epoch), written beside its place and renamed into it."""
    tmp = partial.with_name(f"{partial.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "step": step, "history": history, "train_s": train_s}, tmp / "state.pt")
    atomic_replace_dir(tmp, partial)


def load_partial(partial: Path | None, model, optimizer, scheduler) -> tuple[int, list, float]:
    """(steps done, loss history, training seconds so far) from a partial checkpoint, or a fresh start."""
    if partial is None or not (partial / "state.pt").exists():
        return 0, [], 0.0
    state = torch.load(partial / "state.pt", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    log.info("pretrain: resuming from %s at step %d", partial, state["step"])
    return state["step"], state["history"], state["train_s"]


def train_size(config: PretrainConfig, size: str, tokenizer, blocks: torch.Tensor, heldout: torch.Tensor,
               run: Run, partial: Path | None = None) -> dict:
    """The pretraining loop for one size; returns its summary (also saved in the cache). With `partial`,
    it checkpoints there every save_steps and continues from what it finds there."""
    seed_everything(config.seed)
    model = build_model(config, size, tokenizer)
    optimizer, scheduler = make_optimizer(model, config, config.steps)
    params = sum(p.numel() for p in model.parameters())
    log.info("pretrain %s: %d parameters, %d blocks of %d tokens, %d steps of %d blocks",
             size, params, len(blocks), config.block_size, config.steps, config.batch_size)
    per_epoch = len(blocks) // config.batch_size
    first, history, train_before = load_partial(partial, model, optimizer, scheduler)
    window, window_s, start = StepSums(), 0.0, time.time()
    bar = progress(config.steps, f"pretrain {size}")
    bar.update(first)
    model.train()
    for step in range(first, config.steps):
        t0 = time.time()
        epoch, pos = divmod(step, per_epoch)
        order = epoch_order(len(blocks), config.seed, epoch)
        ids = blocks[order[pos * config.batch_size : (pos + 1) * config.batch_size]]  # (B, L)
        loss = model(input_ids=ids, labels=ids).loss  # next-token loss on every token (HF shifts the labels)
        check_finite(loss, step, None)
        loss.backward()
        if config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        window += StepSums(loss.detach().item(), 1)
        window_s += time.time() - t0
        bar.update(1)

        # --- log, checkpoint ----------------------------------------------------------------
        if (step + 1) % config.logging_steps == 0 or step + 1 == config.steps:
            mean = window.loss_sum / window.steps
            tokens_per_s = window.steps * config.batch_size * config.block_size / max(window_s, 1e-9)
            history.append({"step": step + 1, "loss": mean})
            run.log(step + 1, {f"pretrain/{size}/loss": mean, f"pretrain/{size}/tokens_per_s": tokens_per_s})
            bar.set_postfix(loss=f"{mean:.3f}", tok_s=f"{tokens_per_s:.0f}")
            if bar.disable:  # in a worker process: a log line instead of the bar
                left = (config.steps - step - 1) * config.batch_size * config.block_size / max(tokens_per_s, 1e-9)
                log.info("pretrain %s: step %d/%d, loss %.3f, %.0f tokens/s, about %.0f min left", size, step + 1,
                         config.steps, mean, tokens_per_s, left / 60)
            window, window_s = StepSums(), 0.0
        if partial is not None and config.save_steps and (step + 1) % config.save_steps == 0 and step + 1 < config.steps:
            save_partial(partial, model, optimizer, scheduler, step + 1, history, train_before + time.time() - start)
    bar.close()
    train_s = train_before + time.time() - start  # before the held-out loss: the throughput is training's alone
    heldout_loss = block_loss(model, heldout, tokenizer.pad_token_id)
    tokens = config.steps * config.batch_size * config.block_size
    summary = {
        "size": size, "params": params, "seed": config.seed, "steps": config.steps,
        "tokens": tokens, "train_s": round(train_s, 1), "tokens_per_s": tokens / max(train_s, 1e-9), "resumed_at": first,
        "loss_first": history[0]["loss"], "loss_last": history[-1]["loss"],
        "heldout_loss": heldout_loss, "heldout_ppl": math.exp(heldout_loss), "history": history,
    }
    log.info("pretrain %s: loss %.3f -> %.3f, held-out perplexity %.2f, %.0f s", size, summary["loss_first"],
             summary["loss_last"], summary["heldout_ppl"], summary["train_s"])
    return {"model": model, **summary}


def save_to_cache(path: Path, model, tokenizer, summary: dict, config: PretrainConfig) -> None:
    """Write the model folder (bf16 weights) next to its final place, then rename: a killed run leaves no
    half model that a later run would mistake for a cached one."""
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    model.to(torch.bfloat16).save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    atomic_write_json(tmp / "pretrain.json", {**summary, "config": to_dict(config)})
    atomic_replace_dir(tmp, path)


def cached_summary(path: Path) -> dict | None:
    """The saved summary of a complete model folder, or None."""
    meta = path / "pretrain.json"
    return json.loads(meta.read_text()) if meta.exists() and (path / "config.json").exists() else None


def find_model(config: PretrainConfig, size: str, fingerprint: str) -> tuple[Path, dict | None, str]:
    """(folder, its summary or None, where it came from): the shipped base when its name (the hash of the
    config and the world) matches, else the cache."""
    path = cache_dir(config, size, fingerprint)
    shipped = SHIPPED / path.name
    summary = cached_summary(shipped)
    if summary is not None:
        return shipped, summary, "shipped"
    return path, cached_summary(path), "cache"


def train_and_save(config: PretrainConfig, size: str, blocks: torch.Tensor, heldout: torch.Tensor, path: str) -> dict:
    """A worker's job: train one size, measure it, save it (bf16) to `path`; returns its summary."""
    from rlhf.world import World

    if config.threads > 0:
        torch.set_num_threads(config.threads)
    tokenizer = World(config.seed).tokenizer()
    result = train_size(config, size, tokenizer, blocks, heldout, _NullRun(), partial_dir(Path(path)))
    model = result.pop("model")
    # The shipped weights are bf16: measure what they lose against the fp32 weights they were rounded from.
    result["heldout_ppl_bf16"] = math.exp(block_loss(model.to(torch.bfloat16).float(), heldout,
                                                     tokenizer.pad_token_id))
    save_to_cache(Path(path), model, tokenizer, result, config)
    shutil.rmtree(partial_dir(Path(path)), ignore_errors=True)  # after the final folder exists, not before
    return result


def pretrained_models(config: PretrainConfig, run: Run | None = None) -> dict[str, dict]:
    """{size: summary with "path" and "source" (shipped, cache or trained)} for every size of the config,
    training the ones neither shipped nor cached, side by side in worker processes."""
    from rlhf.demo.workers import Job, Workers, default_workers
    from rlhf.world import World

    out: dict[str, dict] = {}
    fingerprint = world_fingerprint(config)  # writes the world's text: once, not once a size
    missing = []
    for size in config.sizes:
        path, summary, source = find_model(config, size, fingerprint)
        if summary is None:
            missing.append((size, path))
            continue
        log.info("pretrain %s: using the %s base model %s (world hash and config match)", size,
                 "shipped" if source == "shipped" else "cached", path)
        out[size] = {**summary, "path": str(path), "source": source}
    if missing:
        log.info("pretrain: no shipped or cached base model matches this world and config for %s: training "
                 "(with the default recipe about %d minutes on this project's two-core machine; the bars show the "
                 "time left)", ", ".join(s for s, _ in missing), max(RECIPE_MINUTES[s] for s, _ in missing))
        world = World(config.seed)
        tokenizer = world.tokenizer()
        blocks = pack_blocks(world.pretraining_text(config.documents), tokenizer, config.block_size)
        heldout = pack_blocks(world.pretraining_text(config.heldout_documents, split="heldout"), tokenizer,
                              config.block_size)
        jobs = [Job(f"pretrain {size}", train_and_save, (config, size, blocks, heldout, str(path)))
                for size, path in sorted(missing, key=lambda m: -SHAPES[m[0]]["d_model"] * SHAPES[m[0]]["n_layer"])]
        with Workers(config.workers or default_workers(), config.threads) as workers:
            results = workers.run(jobs, "pretrain")
        for job, result in zip(jobs, results):
            size = job.name.split()[-1]
            path = dict(missing)[size]
            for row in result["history"]:
                (run or _NullRun()).log(row["step"], {f"pretrain/{size}/loss": row["loss"]})
            out[size] = {**result, "path": str(path), "source": "trained"}
    return {size: out[size] for size in config.sizes}


# minutes per size with the default recipe, sizes side by side on two cores (docs/demo.md, "Base models"): the
# largest missing size bounds the wait
RECIPE_MINUTES = {"small": 7, "medium": 19, "large": 70}


class _NullRun:
    def log(self, step: int, metrics: dict) -> None:
        pass


def main(config: PretrainConfig, out: str, resume: bool = False) -> dict[str, float]:
    """Train (or reuse) every size; out/models.json maps each size to its folder.
    `resume` has nothing to do: the cache is what a second run reuses."""
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    run = Run(out, config, True, resume=False)
    models = pretrained_models(config, run)
    atomic_write_json(Path(out) / "models.json", {size: m["path"] for size, m in models.items()})
    metrics: dict[str, float] = {}
    for size, m in models.items():
        metrics.update({
            f"pretrain/{size}/params": m["params"], f"pretrain/{size}/loss_first": m["loss_first"],
            f"pretrain/{size}/loss_last": m["loss_last"], f"pretrain/{size}/heldout_ppl": m["heldout_ppl"],
            f"pretrain/{size}/heldout_ppl_bf16": m.get("heldout_ppl_bf16", float("nan")),
            f"pretrain/{size}/train_s": m["train_s"], f"pretrain/{size}/reused": int(m["source"] != "trained"),
            f"pretrain/{size}/shipped": int(m["source"] == "shipped"),
            f"pretrain/{size}/tokens_per_s": m.get("tokens_per_s", float("nan")),  # of the run that trained it
        })
    return run.finish(metrics)
