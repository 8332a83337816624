"""`rlhf data prepare --in prompts.db|prompts.jsonl --out DIR [--max-per-user 200] [--prefix-chars 64] ...`"""

from __future__ import annotations

import argparse
import json
import sys

from rlhf.data.records import RecordError


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers like 0.8,0.1,0.1, got {text!r}") from None
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers (train,valid,test), got {len(parts)}")
    return parts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlhf data", description="Prompt data tools (docs/data_prepare.md).")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="dedup, per-user cap, split by user, PII masking, category tables",
                       description="Prepare prompts as in the paper's section 3.2: drop prompts sharing a long "
                       "prefix with an earlier one, cap prompts per user, split by user id, mask personal "
                       "information; writes train/valid/test.jsonl, stats.md and report.json.")
    p.add_argument("--in", dest="source", required=True,
                   help="the serving log (SQLite, from `rlhf serve --log-prompts`) or a prompts file (.jsonl, .json, "
                   ".parquet, a saved dataset folder)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--max-per-user", type=int, default=200, help="most prompts per user id; 0 for no cap [200]")
    p.add_argument("--prefix-chars", type=int, default=64,
                   help="prompts sharing this many leading characters (normalised) with an earlier one are dropped [64]")
    p.add_argument("--max-prompt-chars", type=int, default=32_768,
                   help="longer prompts are dropped before masking and counted as dropped/too_long; 0 for no cap "
                   "[32768]")
    p.add_argument("--split", type=_fractions, default=(0.8, 0.1, 0.1),
                   help="train,valid,test shares of users [0.8,0.1,0.1]")
    p.add_argument("--seed", type=int, default=0, help="salt of the user-id hash that assigns splits [0]")
    p.add_argument("--no-pii", action="store_true", help="do not mask personal information")
    p.add_argument("--tag-categories", action="store_true",
                   help="guess a use-case category by keywords where a prompt has none")
    p.add_argument("--skip-bad-records", action="store_true", help="count and skip invalid records instead of stopping")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    from rlhf.data.prepare import PrepareConfig, prepare

    args = build_parser().parse_args(argv)
    config = PrepareConfig(
        max_per_user=args.max_per_user, prefix_chars=args.prefix_chars, max_prompt_chars=args.max_prompt_chars,
        fractions=args.split, seed=args.seed,
        scrub_pii=not args.no_pii, tag_categories=args.tag_categories, skip_bad_records=args.skip_bad_records,
        progress=not args.no_progress,
    )
    try:
        report = prepare(args.source, args.out, config)
    except (RecordError, ValueError, FileNotFoundError) as e:
        print(f"rlhf data prepare: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0
