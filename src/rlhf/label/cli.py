"""`rlhf label <command>`: serve the app, import tasks, export records, stats, users.

Every command takes --db (default: $RLHF_LABEL_DB, else sqlite:///labels.db) and
migrates the database first, so a fresh database just works.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
from pathlib import Path

from rlhf.data.records import RecordError
from rlhf.label.db import default_db_url, sqlite_path

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=default_db_url(),
                        help="database URL: sqlite:///labels.db (default, or $RLHF_LABEL_DB) or postgresql://user:pw@host/db")
    parser = argparse.ArgumentParser(prog="rlhf label", description="the human-feedback web app (see docs/label.md)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    p = sub.add_parser("serve", parents=[common], help="run the web app")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for a team, behind HTTPS)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--secure-cookies", choices=("auto", "on", "off"), default="auto",
                   help="mark the session cookie Secure (HTTPS only); auto: on unless --host is loopback")
    p.add_argument("--secret-file", help="the cookie-signing key, made (0600) if missing; default: the SQLite file's "
                   "name + .secret; $RLHF_LABEL_SECRET overrides it; required with PostgreSQL unless that is set")

    p = sub.add_parser("import-prompts", parents=[common], help="prompts JSONL -> demonstration tasks")
    p.add_argument("path")
    p.add_argument("--task", choices=("demonstration",), default="demonstration")
    p.add_argument("--overlap", type=int, help="labelers per item (default: the app's overlap setting)")
    p.add_argument("--skip-bad-records", action="store_true", help="leave bad records out instead of stopping")

    p = sub.add_parser("import-samples", parents=[common], help="samples JSONL -> ranking tasks of K outputs per prompt")
    p.add_argument("path")
    p.add_argument("--task", choices=("ranking",), default="ranking")
    p.add_argument("--k", type=int, default=4, help="responses per ranking task (the paper: 4 to 9)")
    p.add_argument("--overlap", type=int, help="labelers per item (default: the app's overlap setting)")
    p.add_argument("--skip-bad-records", action="store_true")

    p = sub.add_parser("import-screening", parents=[common],
                       help="screening items with known answers: comparisons (--task ranking) or demonstrations")
    p.add_argument("path")
    p.add_argument("--task", choices=("ranking", "demonstration"), required=True)
    p.add_argument("--skip-bad-records", action="store_true")

    p = sub.add_parser("export", parents=[common], help="answers -> demonstrations or comparisons JSONL (formats.md)")
    p.add_argument("--kind", choices=("demonstrations", "comparisons"), required=True)
    p.add_argument("--out", required=True, help="output file (.jsonl or .parquet)")
    p.add_argument("--exclude", default="", help="comma-separated labeler ids to leave out")
    p.add_argument("--holdout", default="", help="comma-separated labeler ids written to --holdout-out instead")
    p.add_argument("--holdout-out", help="file for the held-out labelers' records (default: OUT with .holdout before the suffix)")

    p = sub.add_parser("stats", parents=[common], help="progress, agreement, throughput, flag rates, screening")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("create-user", parents=[common], help="add a labeler (a screening candidate unless --approved) or an admin")
    p.add_argument("username")
    p.add_argument("--role", choices=("labeler", "admin"), default="labeler")
    p.add_argument("--approved", action="store_true", help="skip screening")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin (else prompt)")

    p = sub.add_parser("add-admin", parents=[common], help="same as create-user --role admin")
    p.add_argument("username")
    p.add_argument("--password-stdin", action="store_true")

    for name, status in (("approve", "approved"), ("disable", "disabled")):
        p = sub.add_parser(name, parents=[common], help=f"mark a user {status}")
        p.add_argument("username")
        p.set_defaults(status=status)

    p = sub.add_parser("reset-password", parents=[common],
                       help="a new password for a user; ends their sessions (a running server also has a page for it)")
    p.add_argument("username")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin (else prompt)")

    p = sub.add_parser("set-overlap", parents=[common], help="labelers per item for items imported without --overlap")
    p.add_argument("value")
    p.set_defaults(setting="overlap")
    p = sub.add_parser("set-lease", parents=[common],
                       help="minutes a labeler may hold a task before another labeler may take it over")
    p.add_argument("value")
    p.set_defaults(setting="lease_minutes")
    return parser


def _ids(text: str) -> set[str]:
    return {x.strip() for x in text.split(",") if x.strip()}


def _password(args) -> str:
    if args.password_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the passwords differ")
    return first


def _secret_path(args) -> Path | None:
    if args.secret_file:
        return Path(args.secret_file)
    database = sqlite_path(args.db)
    return None if database is None else database.with_name(database.name + ".secret")


def cmd_serve(db, args) -> int:
    import uvicorn

    from rlhf.label.app import create_app
    from rlhf.label.auth import load_secret

    # Failed logins, lockouts and password resets, with a time stamp, on stderr.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("rlhf.label").addHandler(handler)
    logging.getLogger("rlhf.label").setLevel(logging.INFO)
    secure = args.secure_cookies == "on" or (args.secure_cookies == "auto" and args.host not in LOOPBACK)
    if not secure:
        print("rlhf label: session cookies are not marked Secure (plain http on loopback)", file=sys.stderr)
    app = create_app(db, load_secret(_secret_path(args)), secure_cookies=secure)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def cmd_import(db, args) -> int:
    from rlhf.label import imports

    if args.command == "import-prompts":
        report = imports.import_prompts(db, args.path, args.overlap, args.skip_bad_records)
    elif args.command == "import-samples":
        report = imports.import_samples(db, args.path, args.k, args.overlap, args.skip_bad_records)
    else:
        report = imports.import_screening(db, args.path, args.task, args.skip_bad_records)
    print(f"{args.path}: {report}")
    return 0


def cmd_export(db, args) -> int:
    from rlhf.data import write_records
    from rlhf.label.export import export_records

    records, held_out = export_records(db, args.kind, exclude=_ids(args.exclude), holdout=_ids(args.holdout))
    write_records(args.out, records)
    print(f"wrote {len(records)} {args.kind} to {args.out}")
    if args.holdout:
        out = Path(args.out)
        holdout_out = args.holdout_out or str(out.with_name(f"{out.stem}.holdout{out.suffix}"))
        write_records(holdout_out, held_out)
        print(f"wrote {len(held_out)} held-out {args.kind} to {holdout_out}")
    return 0


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def cmd_stats(db, args) -> int:
    from rlhf.label.stats import collect

    result = collect(db)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    print(f"overlap: {result['overlap']} labeler(s) per item")
    for kind, p in result["progress"].items():
        print(f"{kind:<14} items {p['items']:>6}  done {p['done']:>6}  answers {p['answers']:>6}")
    a = result["agreement"]
    print(f"\ninter-labeler agreement: {_pct(a['agreement'])} over {a['pairs']} response pairs")
    print(f"\n{'labeler':<16}{'answers':>8}{'demos':>7}{'ranks':>7}{'24h':>6}{'med s':>8}{'agree':>8}")
    for name, t in result["throughput"].items():
        agree = a["per_labeler"].get(name, {}).get("agreement")
        print(f"{name:<16}{t['answers']:>8}{t['demonstrations']:>7}{t['rankings']:>7}{t['last_24h']:>6}"
              f"{t['median_seconds']:>8}{_pct(agree):>8}")
    print(f"\nflag rates over {result['flags']['responses']} ranked responses:")
    for name, rate in result["flags"]["rates"].items():
        print(f"  {name:<28}{_pct(rate)}")
    if result["screening"]:
        print("\nscreening (agreement with reference answers):")
        for name, s in result["screening"].items():
            print(f"  {name:<16} ranking {_pct(s['ranking_agreement'])}  flags {_pct(s['flag_agreement'])}"
                  f"  demonstrations {s['demonstrations']}")
    return 0


def _named_user(session, username: str):
    from sqlalchemy import select

    from rlhf.label.models import User

    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise ValueError(f"no user named {username!r}")
    return user


def cmd_users(db, args) -> int:
    from rlhf.label.auth import create_user, new_password_hash, set_password
    from rlhf.label.db import parse_setting, set_setting
    from rlhf.label.tasks import release_open

    if args.command in ("create-user", "add-admin"):
        role = "admin" if args.command == "add-admin" else args.role
        status = "approved" if role == "admin" or args.approved else "candidate"
        with db.transaction() as s:
            create_user(s, args.username, _password(args), role=role, status=status)
        print(f"created {role} {args.username} ({status})")
    elif args.command in ("set-overlap", "set-lease"):
        value = parse_setting(args.setting, args.value)
        with db.transaction() as s:
            set_setting(s, args.setting, str(value))
        print(f"{args.setting} set to {value}")
    elif args.command == "reset-password":
        hashed = new_password_hash(_password(args))
        with db.transaction() as s:
            set_password(_named_user(s, args.username), hashed)
        print(f"{args.username}: new password set; their sessions have ended")
    else:
        with db.transaction() as s:
            user = _named_user(s, args.username)
            user.status = args.status
            released = release_open(s, user.id) if args.status != "approved" else 0
        print(f"{args.username}: {args.status}" + (f" ({released} open task(s) given back)" if released else ""))
    return 0


COMMANDS = {
    "serve": cmd_serve, "import-prompts": cmd_import, "import-samples": cmd_import, "import-screening": cmd_import,
    "export": cmd_export, "stats": cmd_stats, "create-user": cmd_users, "add-admin": cmd_users,
    "approve": cmd_users, "disable": cmd_users, "reset-password": cmd_users, "set-overlap": cmd_users,
    "set-lease": cmd_users,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from rlhf.label.db import Database

    try:
        db = Database(args.db)
    except Exception as e:  # a bad URL or an unreachable server: say which, not a traceback
        print(f"rlhf label: cannot open the database {args.db}: {e}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](db, args)
    except (RecordError, ValueError, FileNotFoundError) as e:
        print(f"rlhf label {args.command}: {e}", file=sys.stderr)
        return 2
    finally:
        db.dispose()
