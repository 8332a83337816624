"""Load test of the labeling app on loopback: N simulated labelers submit as fast
as they can for a while against SQLite; every acknowledged answer must be in the
export, none twice. Reports submissions/s and page latency percentiles.

    python benchmarks/label_load.py --labelers 20 --seconds 60
    python benchmarks/label_load.py --db postgresql://user@127.0.0.1/labels   # a server you started

Every labeler logs in first; then the clock starts, and each loops: GET /next
(redirect) -> GET /task/<id> -> POST the answer; an answer is acknowledged when
the POST answers 303. Latency is per HTTP request,
measured by the client (20 coroutines in one process, on the same machine as the
server: the numbers include the client's own overhead).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from rlhf.data import FLAGS
from rlhf.label import imports
from rlhf.label.auth import create_user
from rlhf.label.db import Database
from rlhf.label.export import export_records

PASSWORD = "load test password"
HIDDEN = re.compile(r'name="(csrf_token|token)" value="([^"]+)"')
CARD = re.compile(r'<li class="card" tabindex="0" data-index="(\d+)"')


def setup(db_url: str, labelers: int, items: int, k: int, workdir: Path) -> list[str]:
    """Users L00.. (approved) and `items` ranking tasks plus `items` demonstration tasks."""
    db = Database(db_url)
    names = [f"L{i:02d}" for i in range(labelers)]
    with db.transaction() as s:
        for name in names:
            create_user(s, name, PASSWORD, status="approved")
    samples = workdir / "load_samples.jsonl"
    prompts = workdir / "load_prompts.jsonl"
    with samples.open("w") as f:
        for p in range(items):
            for j in range(k):
                f.write(json.dumps({"prompt_id": f"r{p}", "prompt": f"Rank these {p}", "model": f"m{j}",
                                    "response": f"response {j} for {p}"}) + "\n")
    with prompts.open("w") as f:
        for p in range(items):
            f.write(json.dumps({"id": f"d{p}", "prompt": f"Demonstrate {p}"}) + "\n")
    imports.import_samples(db, samples, k=k)
    imports.import_prompts(db, prompts)
    db.dispose()
    return names


def _fields(html: str) -> dict[str, str]:
    return dict(HIDDEN.findall(html))


async def _timed(client: httpx.AsyncClient, latencies: list, method: str, url: str, **kw) -> httpx.Response:
    start = time.perf_counter()
    response = await client.request(method, url, **kw)
    # Logins are argon2 by design (~0.2 s of CPU each): kept out of the page numbers.
    latencies.append(("LOGIN" if url == "/login" else method, time.perf_counter() - start))
    return response


async def log_in(client: httpx.AsyncClient, name: str, latencies: list, errors: list) -> bool:
    page = await _timed(client, latencies, "GET", "/login")
    form = {"username": name, "password": PASSWORD, "csrf_token": _fields(page.text)["csrf_token"]}
    if (await _timed(client, latencies, "POST", "/login", data=form)).status_code != 303:
        errors.append(f"{name}: login failed")
        return False
    return True


async def labeler(client: httpx.AsyncClient, name: str, deadline: float, acks: list, latencies: list,
                  errors: list) -> None:
    while time.monotonic() < deadline:
        nxt = await _timed(client, latencies, "GET", "/next")
        if nxt.status_code != 303:
            return  # no task left for this labeler
        path = nxt.headers["location"]
        page = await _timed(client, latencies, "GET", path)
        fields = _fields(page.text)
        shown = [int(i) for i in CARD.findall(page.text)]
        expected: dict = {"labeler_id": name}
        if shown:
            order = random.sample(shown, len(shown))
            for pos, i in enumerate(order):
                fields[f"rank_{i}"] = str(pos + 1)
                fields[f"likert_{i}"] = str(random.randint(1, 7))
                fields[f"flag_{i}"] = random.sample(FLAGS, random.randint(0, 2))
            expected["ranking"] = order
        else:
            fields["response"] = expected["response"] = f"{name} answers {path} {random.random()}"
        done = await _timed(client, latencies, "POST", path, data=fields)
        if done.status_code == 303:
            acks.append(expected | {"task": path})
        else:
            errors.append(f"{name} {path}: HTTP {done.status_code}")


async def simulate(base: str, names: list[str], seconds: float) -> tuple[list, list, list]:
    acks, latencies, errors = [], [], []
    clients = [httpx.AsyncClient(base_url=base, timeout=120) for _ in names]
    try:
        logged_in = await asyncio.gather(*(log_in(c, n, latencies, errors) for c, n in zip(clients, names)))
        # The clock starts once everyone is in: twenty argon2 logins (slow on purpose, and
        # re-hashed at the first login) are not what this measures, and on a busy
        # machine they used to eat the whole window.
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(labeler(c, n, deadline, acks, latencies, errors)
                               for c, n, ok in zip(clients, names, logged_in) if ok))
    finally:
        for client in clients:
            await client.aclose()
    return acks, latencies, errors


def verify(db_url: str, acks: list[dict]) -> dict:
    """Every acknowledged answer exactly once in the export, with what was sent."""
    db = Database(db_url)
    exported = []
    for kind in ("comparisons", "demonstrations"):
        exported += export_records(db, kind)[0]
    db.dispose()
    seen: dict = {}
    for r in exported:
        key = (r["labeler_id"], r["prompt_id"])
        seen[key] = seen.get(key, 0) + 1
    by_content = {(r["labeler_id"], r.get("response") or json.dumps(r.get("ranking"))): r for r in exported}
    lost = [a for a in acks
            if (a["labeler_id"], a.get("response") or json.dumps(a.get("ranking"))) not in by_content]
    return {"exported": len(exported), "acknowledged": len(acks), "lost": len(lost),
            "duplicates": sum(n - 1 for n in seen.values())}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def summarize(acks, latencies, errors, seconds: float) -> dict:
    pages = [t for m, t in latencies if m == "GET"]
    posts = [t for m, t in latencies if m == "POST"]
    every = pages + posts
    return {
        "seconds": seconds, "submissions": len(acks), "submissions_per_s": round(len(acks) / seconds, 1),
        "requests": len(latencies), "errors": len(errors), "first_errors": errors[:5],
        "p50_ms": round(1000 * percentile(every, 0.5), 1), "p95_ms": round(1000 * percentile(every, 0.95), 1),
        "p99_ms": round(1000 * percentile(every, 0.99), 1), "p95_page_ms": round(1000 * percentile(pages, 0.95), 1),
        "p95_submit_ms": round(1000 * percentile(posts, 0.95), 1),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file in a temp folder)")
    parser.add_argument("--labelers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--items", type=int, default=5000, help="ranking tasks and demonstration tasks to import")
    parser.add_argument("--k", type=int, default=4)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="label-load-"))
    db_url = args.db or f"sqlite:///{workdir / 'labels.db'}"
    names = setup(db_url, args.labelers, args.items, args.k, workdir)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "rlhf", "label", "serve", "--db", db_url, "--port", str(port)])
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        acks, latencies, errors = asyncio.run(simulate(base, names, args.seconds))
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait()
    report = summarize(acks, latencies, errors, args.seconds) | verify(db_url, acks)
    print(json.dumps(report, indent=2))
    return 0 if report["lost"] == 0 and report["duplicates"] == 0 and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
