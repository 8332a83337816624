"""`rlhf <stage> --config x.yaml --out DIR key=value ...`

Training stages share one argument shape and one typed config each. Tools that
are not training runs (the labeling app, the server, data preparation) own their
argument parsing. Everything is imported lazily so `rlhf --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import textwrap

# stage -> (config class, main function, one-line summary)
STAGES = {
    "sft": ("rlhf.sft.config:SFTConfig", "rlhf.sft.train:main", "supervised fine-tuning on demonstrations (paper 3.5)"),
    "rm": ("rlhf.rm.config:RMConfig", "rlhf.rm.train:main", "K-way reward model on rankings (paper 3.5)"),
    "ppo": ("rlhf.ppo.config:PPOConfig", "rlhf.ppo.train:main", "PPO / PPO-ptx against the reward model (paper 3.5)"),
    "eval": ("rlhf.eval.config:EvalConfig", "rlhf.eval.run:main", "win rate, reward, KL, perplexity of models against a baseline"),
    "eval report": ("rlhf.eval.config:ReportConfig", "rlhf.eval.report:main",
                    "human labels from the labeling app -> win rates, Likert, flags, agreement"),
    "eval tax": ("rlhf.eval.config:TaxConfig", "rlhf.eval.tax:main",
                 "the alignment tax: public NLP tasks with lm-evaluation-harness, each model beside the baseline"),
    "eval generate": ("rlhf.eval.config:GenerateConfig", "rlhf.eval.generate:main",
                      "samples under the paper's prompt formats (RealToxicityPrompts, TruthfulQA) for eval score"),
    "eval score": ("rlhf.eval.config:ScoreConfig", "rlhf.eval.score:main",
                   "EM/F1 (SQuAD, DROP), BLEU, ROUGE, toxicity, truthfulness of a samples file, with intervals"),
    "pretrain": ("rlhf.demo.pretrain:PretrainConfig", "rlhf.demo.pretrain:main", "train base LMs on the embedded world's text"),
    "demo": ("rlhf.demo.config:DemoConfig", "rlhf.demo.run:main", "the whole InstructGPT loop on the embedded world"),
}

# tool -> (module with main(argv) -> int, one-line summary)
TOOLS = {
    "label": ("rlhf.label.cli", "the human-feedback web app: serve, import, export, stats"),
    "serve": ("rlhf.serve.cli", "serve a model behind an OpenAI-compatible API, logging prompts"),
    "data": ("rlhf.data.cli", "prepare prompts as the paper did: dedup by prefix, per-user cap, split by user, PII"),
}


def _load(target: str):
    module, _, name = target.partition(":")
    mod = importlib.import_module(module)
    return getattr(mod, name) if name else mod


def _top_help() -> str:
    lines = ["usage: rlhf <command> [options]", "", "training stages (rlhf <stage> --config X.yaml --out DIR [key=value ...]):"]
    width = max(len(name) for name in [*STAGES, *TOOLS]) + 2
    lines += [f"  {name:<{width}}{summary}" for name, (_, _, summary) in STAGES.items()]
    lines += ["", "tools (rlhf <tool> --help for their options):"]
    lines += [f"  {name:<{width}}{summary}" for name, (_, summary) in TOOLS.items()]
    lines += ["", "Any config key can be overridden as key=value (dotted for nested keys, e.g. lora.r=8)."]
    return "\n".join(lines)


def _stage_parser(stage: str) -> argparse.ArgumentParser:
    from rlhf.config import describe

    config_cls = _load(STAGES[stage][0])
    rows = describe(config_cls)
    width = max(len(k) for k, _, _ in rows) + 2
    epilog = ["config keys (key=value on the command line, or in the YAML file):"]
    for key, default, doc in rows:
        wrapped = textwrap.wrap(f"{doc} [default: {default}]", 100 - width - 4) or [""]
        epilog.append(f"  {key:<{width}}{wrapped[0]}")
        epilog += [" " * (width + 2) + w for w in wrapped[1:]]
    parser = argparse.ArgumentParser(
        prog=f"rlhf {stage}",
        description=STAGES[stage][2],
        epilog="\n".join(epilog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="YAML file with config values (overridden by key=value)")
    parser.add_argument("--out", required=True, help="run folder: config, metrics, logs and checkpoints go here")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    parser.add_argument("--debug", action="store_true",
                        help="on an error in the config or the input files, show the Python traceback too")
    if stage == "demo":
        parser.add_argument("--quick", action="store_true", help="one small size, fewer steps, same report (quick=true)")
    if stage == "eval report":
        parser.add_argument("--labels", help="the labeling app's comparisons export (labels=FILE)")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides")
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """What a user's config or files cause, reported as one line: a wrong key or value, a bad record (file,
    line, field), a missing file or model folder. Anything else is a bug and keeps its traceback."""
    from rlhf.config import ConfigError
    from rlhf.data.records import RecordError

    return ConfigError, RecordError, FileNotFoundError


def _report_user_error(stage: str, error: BaseException) -> int:
    rank = os.environ.get("RANK", "0")
    where = "" if rank == "0" else f" (process {rank})"
    print(f"rlhf {stage}: error{where}: {error}", file=sys.stderr)
    return 2


def run_stage(stage: str, argv: list[str]) -> int:
    from rlhf.config import load_config

    # Intermixed: key=value overrides may come before and after --out (plain parse_args takes only the first run).
    args = _stage_parser(stage).parse_intermixed_args(argv)
    if getattr(args, "quick", False):
        args.overrides.append("quick=true")
    if getattr(args, "labels", None):
        args.overrides.append(f"labels={args.labels}")
    config_cls = _load(STAGES[stage][0])
    try:
        config = load_config(config_cls, args.config, args.overrides)
    except _user_errors() as e:
        if args.debug:
            raise
        return _report_user_error(stage, e)
    main_fn = _load(STAGES[stage][1])
    try:
        metrics = main_fn(config, args.out, resume=args.resume)
    except _user_errors() as e:
        _close_process_group(barrier=False)
        if args.debug:
            raise
        return _report_user_error(stage, e)
    except BaseException:
        _close_process_group(barrier=False)  # another rank may never reach a barrier
        raise
    _close_process_group(barrier=True)
    if metrics and os.environ.get("RANK", "0") == "0":  # one summary, not one per process
        width = max(len(k) for k in metrics)
        for key, value in metrics.items():
            print(f"{key:<{width}}  {value:.6g}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    return 0


def _close_process_group(barrier: bool) -> None:
    """Tear down torch.distributed before the interpreter exits: gloo's threads otherwise can
    abort a rank at exit ("terminate called without an active exception", seen in CI)."""
    if "torch" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if barrier:
            dist.barrier()
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_top_help())
        return 0
    command, rest = argv[0], argv[1:]
    if rest and f"{command} {rest[0]}" in STAGES:  # rlhf eval report ...
        command, rest = f"{command} {rest[0]}", rest[1:]
    if command in STAGES:
        return run_stage(command, rest)
    if command in TOOLS:
        return int(_load(TOOLS[command][0]).main(rest) or 0)
    print(f"rlhf: unknown command '{command}'\n\n{_top_help()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
