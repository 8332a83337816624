"""The real server in a subprocess: acknowledged submissions survive kill -9, and
20 concurrent labelers lose nothing and duplicate nothing."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import stat
from pathlib import Path

import httpx
import pytest
from tests.label.conftest import add_user, http_login
from tests.label.label_helpers import add_prompts, add_rankings, form_fields, ranking_form, shown_indices

from rlhf.label.db import Database
from rlhf.label.export import export_records

ROOT = Path(__file__).resolve().parents[2]


def submit_one(client: httpx.Client) -> tuple[str, dict]:
    nxt = client.get("/next")
    assert nxt.status_code == 303, nxt.text
    path = nxt.headers["location"]
    page = client.get(path).text
    shown = shown_indices(page)
    if shown:
        data = {**form_fields(page), **ranking_form(len(shown), list(reversed(shown)), flags={shown[0]: ["hallucination"]})}
    else:
        data = {**form_fields(page), "response": f"answer to {path}"}
    response = client.post(path, data=data)
    assert response.status_code == 303, response.text  # acknowledged
    return path, data


@pytest.mark.slow
def test_acknowledged_submissions_survive_kill_9(sqlite_url, tmp_path, live_server):
    db = Database(sqlite_url)
    add_user(db, "ann")
    add_prompts(db, tmp_path, ["first", "second"])
    add_rankings(db, tmp_path, n_prompts=1, k=4)
    db.dispose()
    sent = []
    for _ in range(3):
        server = live_server(sqlite_url)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            http_login(client, "ann")
            sent.append(submit_one(client))
        server.kill()  # right after the acknowledgement: no graceful shutdown, no checkpoint
    server = live_server(sqlite_url)  # the restart recovers from the WAL
    database = Path(sqlite_url.removeprefix("sqlite:///"))
    secret = database.with_name(database.name + ".secret")  # serve's default: beside the database
    assert stat.S_IMODE(database.stat().st_mode) == 0o600 and stat.S_IMODE(secret.stat().st_mode) == 0o600
    db = Database(sqlite_url)
    demos = export_records(db, "demonstrations")[0]
    comparisons = export_records(db, "comparisons")[0]
    db.dispose()
    assert sorted(d["response"] for d in demos) == sorted(d["response"] for _, d in sent if "response" in d)
    assert len(comparisons) == 1 and comparisons[0]["flags"][comparisons[0]["ranking"][-1]]["hallucination"]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        http_login(client, "ann")
        assert "No task for you" in client.get("/next").text  # all three are done after the restarts


def _load_module():
    spec = importlib.util.spec_from_file_location("label_load", ROOT / "benchmarks" / "label_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_twenty_labelers_under_load_lose_nothing_and_duplicate_nothing(sqlite_url, tmp_path, live_server):
    load = _load_module()
    names = load.setup(sqlite_url, labelers=20, items=2000, k=4, workdir=tmp_path)
    server = live_server(sqlite_url)
    seconds = 20
    acks, latencies, errors = asyncio.run(load.simulate(server.url, names, seconds))
    server.stop()
    report = load.summarize(acks, latencies, errors, seconds) | load.verify(sqlite_url, acks)
    (tmp_path / "load_report.json").write_text(json.dumps(report, indent=2))
    print("\nload test:", json.dumps(report))
    assert not errors, errors[:5]
    assert report["acknowledged"] >= 40, report  # a working server does far more; this catches a stall
    assert report["lost"] == 0 and report["duplicates"] == 0, report
    assert report["exported"] >= report["acknowledged"]
    # Each task went to one labeler: overlap is 1, so no (prompt_id) was answered twice.
    db = Database(sqlite_url)
    records = export_records(db, "comparisons")[0] + export_records(db, "demonstrations")[0]
    db.dispose()
    prompt_ids = [r["prompt_id"] for r in records]
    assert len(prompt_ids) == len(set(prompt_ids))
