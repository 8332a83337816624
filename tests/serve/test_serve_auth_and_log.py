"""API keys, the prompt log and its opt-outs (on both engines), and durability across a kill -9."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import httpx
import openai
import pytest

from rlhf.serve.cli import KeysError, load_keys
from tests.helpers import request_log_rows
from tests.serve.conftest import ENGINES

KEYS = {"sk-alice-0000000000": "u-alice", "sk-bob-00000000000": {"user_id": "u-bob", "log": False}}


@pytest.fixture(scope="module", params=ENGINES)
def keyed(serve, tmp_path_factory, request):
    keys = tmp_path_factory.mktemp("keys") / "keys.json"
    keys.write_text(json.dumps(KEYS))
    return serve(engine=request.param, keys=str(keys))


def _client(server, key):
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=60)


def test_missing_or_wrong_key_is_401(keyed):
    with pytest.raises(openai.AuthenticationError) as info:
        _client(keyed, "sk-wrong-key-12345").completions.create(model="tiny", prompt="hi", max_tokens=2)
    assert info.value.code == "invalid_api_key"
    assert "sk-wrong" not in info.value.message  # the key is redacted in the message
    r = httpx.post(keyed.base_url + "/completions", json={"model": "tiny", "prompt": "hi"}, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    # Authentication comes before validation, as in the OpenAI API.
    r = httpx.post(keyed.base_url + "/completions", content=b"{bad json", timeout=10)
    assert r.status_code == 401
    assert request_log_rows(keyed) == []


def test_a_request_is_logged_with_the_keys_user_and_its_response(keyed):
    out = _client(keyed, "sk-alice-0000000000").completions.create(
        model="tiny", prompt="list five ideas", max_tokens=5, temperature=0, user="end-user-9")
    (row,) = request_log_rows(keyed)
    assert row["id"] == out.id + "-0"
    assert row["user_id"] == "u-alice"  # the key's user, not the client-chosen `user`
    assert row["model"] == "tiny" and row["endpoint"] == "completions" and row["status"] == "done"
    assert json.loads(row["prompt"]) == "list five ideas"
    params = json.loads(row["params"])
    assert params["max_tokens"] == 5 and params["temperature"] == 0 and params["user"] == "end-user-9"
    assert json.loads(row["response"]) == [out.choices[0].text]
    assert row["completion_tokens"] == 5 and abs(row["created"] - time.time()) < 60


def test_opt_outs_keep_requests_out_of_the_log(keyed):
    before = len(request_log_rows(keyed))
    messages = [{"role": "user", "content": "private"}]
    _client(keyed, "sk-bob-00000000000").chat.completions.create(model="tiny", messages=messages, max_tokens=2)
    _client(keyed, "sk-alice-0000000000").chat.completions.create(model="tiny", messages=messages, max_tokens=2,
                                                                  store=False)
    assert len(request_log_rows(keyed)) == before
    _client(keyed, "sk-alice-0000000000").chat.completions.create(model="tiny", messages=messages, max_tokens=2)
    rows = request_log_rows(keyed)
    assert len(rows) == before + 1 and json.loads(rows[-1]["prompt"]) == messages


def test_keys_file_errors_name_the_file_and_field(tmp_path):
    bad = tmp_path / "keys.json"
    bad.write_text(json.dumps({"sk-1": {"log": False}}))
    with pytest.raises(KeysError, match=r"keys.json: field 'sk-1'"):
        load_keys(bad)
    bad.write_text('{"sk-1": "u",')
    with pytest.raises(KeysError, match=r"keys.json:1: not valid JSON"):
        load_keys(bad)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_an_acknowledged_request_survives_kill_9(tiny_gpt2, tmp_path):
    """`rlhf serve` in a subprocess: once the first streamed byte arrives, the prompt is on disk."""
    db, port = tmp_path / "prompts.db", _free_port()
    cmd = [sys.executable, "-m", "rlhf", "serve", "--model", str(tiny_gpt2), "--model-name", "tiny",
           "--port", str(port), "--log-prompts", str(db), "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ})
    try:
        deadline = time.monotonic() + 180  # a loaded 2-core machine takes a minute to import torch
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()  # before reading stderr: reading a live process's pipe waits for it to end
                    pytest.fail(f"rlhf serve did not start: {proc.communicate()[1].decode()[-3000:]}")
                time.sleep(0.2)
        # Greedy: the random model, sampled, ends an answer with end-of-text about once in 450 tokens, and
        # an answer done before the kill is rightly logged "done"; greedily it repeats two tokens to the end.
        body = {"model": "tiny", "prompt": "remember me", "max_tokens": 400, "temperature": 0, "stream": True,
                "user": "u-9"}
        with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/completions", json=body, timeout=30) as r:
            # Keep the iterator: dropping it closes the connection, and a server that sees the client
            # leave before the kill logs "cancelled" (a flake under load).
            lines = r.iter_lines()
            next(lines)  # acknowledged: the first chunk is here
            os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT user_id, prompt, status FROM requests").fetchall()
    conn.close()
    assert rows == [(None, '"remember me"', "started")]  # no keys: the body's `user` is not the user id


def test_a_client_leaving_mid_stream_stops_decoding_and_is_logged_cancelled(keyed):
    headers = {"Authorization": "Bearer sk-alice-0000000000"}
    # Greedy, as in the kill -9 test: a sampled answer sometimes ended ("done", finish reason "stop")
    # before the server saw the client leave (a CI failure, 2026-12-07).
    body = {"model": "tiny", "prompt": "a long one", "max_tokens": 450, "temperature": 0, "stream": True}
    with httpx.stream("POST", keyed.base_url + "/completions", json=body, headers=headers, timeout=30) as r:
        lines = r.iter_lines()
        next(lines)
    deadline = time.monotonic() + 10
    while request_log_rows(keyed)[-1]["status"] == "started" and time.monotonic() < deadline:
        time.sleep(0.05)
    row = request_log_rows(keyed)[-1]
    assert row["status"] == "cancelled" and json.loads(row["prompt"]) == "a long one"
    # The engine is no longer decoding it: a step under way when the client left may still end
    # (its rows stop at the next step), then nothing.
    tokens = [keyed.state.engine.stats["tokens"]]
    for _ in range(2):
        time.sleep(0.3)
        tokens.append(keyed.state.engine.stats["tokens"])
    assert tokens[2] == tokens[1] <= tokens[0] + 1, tokens
    llm = getattr(keyed.state.engine, "llm", None)
    if llm is not None:  # vLLM: the request was aborted in its engine, not only ignored by ours
        assert llm.get_num_unfinished_requests() == 0
    assert len(json.loads(row["response"])[0]) < 450


def test_the_prompt_log_is_created_owner_only(tmp_path):
    """Issue 16 item 8: prompts.db holds every prompt users typed; it was created 0644."""
    from rlhf.serve.log import RequestLog

    request_log = RequestLog(tmp_path / "logs" / "prompts.db")
    request_log.start(["r-0"], None, "tiny", "completions", {}, ["my password is hunter2"])
    try:
        for name in ("prompts.db", "prompts.db-wal"):  # SQLite gives the WAL the database's mode
            assert (tmp_path / "logs" / name).stat().st_mode & 0o777 == 0o600, name
    finally:
        request_log.close()


def test_an_existing_readable_log_is_warned_about(tmp_path, caplog):
    from rlhf.serve.log import RequestLog

    path = tmp_path / "prompts.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    RequestLog(path).close()
    assert "readable by others" in caplog.text and "chmod 600" in caplog.text


def test_prepare_skips_and_counts_blank_prompts_in_a_log(tmp_path):
    """Issue 16 item 7: the log is untrusted input (an older server logged blank prompts), so
    `data prepare` skips blank rows and counts them instead of stopping on them."""
    from rlhf.cli import main as rlhf_main
    from rlhf.serve.log import RequestLog

    request_log = RequestLog(tmp_path / "prompts.db")
    prompts = ["write a poem about the sea", "", "  \n", [{"role": "user", "content": " "}],
               [{"role": "user", "content": "list five ideas"}]]
    request_log.start([f"r-{i}" for i in range(5)], "u-1", "tiny", "completions", {}, prompts)
    request_log.close()
    out = tmp_path / "prepared"
    assert rlhf_main(["data", "prepare", "--in", str(tmp_path / "prompts.db"), "--out", str(out),
                      "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["input"] == 2 and report["dropped/blank"] == 3
