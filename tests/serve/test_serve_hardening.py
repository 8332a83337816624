"""What hostile and careless clients sent `rlhf serve` (issue 16, items 1-7): each must get an
OpenAI-shaped 4xx of its own, never a 500, and never slow or fail anyone else."""

from __future__ import annotations

import json
import shutil
import socket
import threading

import httpx
import openai
import pytest

from tests.helpers import request_log_rows
from tests.serve.conftest import Gate

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def server(serve):
    return serve(max_body_mb=0.25, max_choices=6)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)


def _post(server, body, path="/completions", **kwargs) -> httpx.Response:
    kwargs.setdefault("headers", JSON)
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(server.base_url + path, content=content, timeout=60, **kwargs)


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


# -- item 1: sampling settings --------------------------------------------------------------


@pytest.mark.parametrize("seed", [2**64, -(2**64), 2**63])
def test_a_seed_outside_int64_is_a_400_naming_seed(server, seed):
    error = _error(_post(server, {"model": "tiny", "prompt": "hi", "max_tokens": 2, "seed": seed}), 400)
    assert error["param"] == "seed" and error["code"] == "invalid_value"


def test_the_int64_bounds_themselves_are_valid_seeds(client):
    for seed in (2**63 - 1, -(2**63)):
        out = client.completions.create(model="tiny", prompt="hi", max_tokens=2, seed=seed, n=2)
        assert len(out.choices) == 2


def test_a_tiny_temperature_is_raised_to_001_as_vllm_does(client, server, reference):
    # 0.01 on this model's logits is greedy in all but name; before, 1e-300 was a 500.
    out = client.completions.create(model="tiny", prompt="hello world", max_tokens=8, temperature=1e-300, seed=1)
    assert out.choices[0].text == reference("hello world", 8)
    assert json.loads(request_log_rows(server)[-1]["params"])["temperature"] == 0.01


def test_a_top_p_that_rounds_to_zero_keeps_the_top_token(client, reference):
    out = client.completions.create(model="tiny", prompt="hello world", max_tokens=8, top_p=1e-46, seed=1)
    assert out.choices[0].text == reference("hello world", 8)  # only the top token is ever left


# -- item 2: body size and tokenizing off the event loop --------------------------------------


def test_a_body_over_the_limit_is_413_before_it_is_read(server):
    big = json.dumps({"model": "tiny", "prompt": "x" * 300_000}).encode()
    error = _error(_post(server, big), 413)
    assert error["code"] == "request_too_large"


def test_a_chunked_body_over_the_limit_is_413_too(server):
    def chunks():  # no Content-Length: the limit is enforced while reading
        yield b'{"model": "tiny", "prompt": "'
        for _ in range(40):
            yield b"x" * 10_000
        yield b'"}'

    error = _error(httpx.post(server.base_url + "/completions", content=chunks(), headers=JSON, timeout=60), 413)
    assert error["code"] == "request_too_large"


def test_text_far_beyond_the_context_is_refused_before_tokenizing(server, monkeypatch):
    engine = server.state.engine
    calls = []
    monkeypatch.setattr(engine, "encode_text", lambda text: calls.append(text) or [1])
    prompt = "hello " * (engine.max_prompt_chars // 6 + 1)
    error = _error(_post(server, {"model": "tiny", "prompt": prompt}), 400)
    assert error["code"] == "context_length_exceeded" and "characters" in error["message"]
    assert calls == []


def test_tokenizing_does_not_block_other_requests(server, monkeypatch):
    """While one request's prompt is being tokenized, other endpoints still answer."""
    engine = server.state.engine
    entered, release = threading.Event(), threading.Event()
    real = engine.encode_text

    def slow_encode(text):
        entered.set()
        release.wait(timeout=60)
        return real(text)

    monkeypatch.setattr(engine, "encode_text", slow_encode)
    slow = threading.Thread(target=_post, args=(server, {"model": "tiny", "prompt": "hi", "max_tokens": 1}))
    slow.start()
    try:
        assert entered.wait(timeout=30)
        r = httpx.get(server.base_url + "/models", timeout=10)  # before: stuck behind the tokenizer
        assert r.status_code == 200
    finally:
        release.set()
        slow.join(timeout=60)


# -- item 3: chat without a chat template ------------------------------------------------------


@pytest.fixture(scope="module")
def no_template_model(tiny_gpt2, tmp_path_factory):
    folder = tmp_path_factory.mktemp("no-template") / "base"
    shutil.copytree(tiny_gpt2, folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def test_chat_without_a_template_is_a_400_naming_the_template(serve, no_template_model):
    server = serve(model=str(no_template_model))
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=60)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert "chat template" in info.value.message and "--chat-template" in info.value.message
    assert info.value.param == "messages"
    assert client.completions.create(model="tiny", prompt="hi", max_tokens=2).choices  # completions still work


def test_chat_template_option_gives_a_base_model_chat(serve, no_template_model, tmp_path):
    template = tmp_path / "chat.jinja"
    template.write_text("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:")
    server = serve(model=str(no_template_model), chat_template=str(template))
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=60)
    out = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=3,
                                         temperature=0)
    assert out.usage.prompt_tokens == len(server.state.engine.encode_text("user: hi\nassistant:"))


def test_a_broken_chat_template_file_names_the_file_and_line(tiny_gpt2, tmp_path):
    from rlhf.core.models import load_tokenizer
    from rlhf.serve.cli import load_chat_template

    bad = tmp_path / "bad.jinja"
    bad.write_text("{% for m in messages %}\n{{ m['content'] }\n{% endfor %}")
    with pytest.raises(ValueError, match=r"bad\.jinja:2: not a usable chat template"):
        load_chat_template(bad, load_tokenizer(str(tiny_gpt2)))
    with pytest.raises(ValueError, match="does not exist"):
        load_chat_template(tmp_path / "missing.jinja", load_tokenizer(str(tiny_gpt2)))


# -- item 4: cross-site requests -------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_not_application_json_is_415_and_not_logged(server, content_type):
    before = len(request_log_rows(server))
    headers = {"content-type": content_type} if content_type else {}
    r = httpx.post(server.base_url + "/completions", timeout=30, headers=headers,
                   content=json.dumps({"model": "tiny", "prompt": "cross-site", "max_tokens": 1, "user": "victim"}))
    _error(r, 415)
    assert len(request_log_rows(server)) == before


def test_json_with_a_charset_is_accepted(server):
    r = _post(server, {"model": "tiny", "prompt": "hi", "max_tokens": 1},
              headers={"content-type": "application/json; charset=utf-8"})
    assert r.status_code == 200


def test_a_cross_origin_post_is_403(server):
    port = server.port
    r = _post(server, {"model": "tiny", "prompt": "hi", "max_tokens": 1},
              headers={**JSON, "origin": "https://evil.example"})
    assert _error(r, 403)["code"] == "forbidden_origin"
    ok = _post(server, {"model": "tiny", "prompt": "hi", "max_tokens": 1},
               headers={**JSON, "origin": f"http://127.0.0.1:{port}"})  # the Playground's own origin
    assert ok.status_code == 200


def test_a_foreign_host_name_is_refused_on_loopback(server):
    """DNS rebinding: a page on evil.example that resolves itself to 127.0.0.1 sends Host: evil.example."""
    for method, path in (("GET", "/models"), ("POST", "/completions")):
        r = httpx.request(method, server.base_url + path, headers={**JSON, "host": "evil.example"}, timeout=30,
                          content=json.dumps({"model": "tiny", "prompt": "hi", "max_tokens": 1}))
        assert _error(r, 400)["code"] == "invalid_host"
    assert httpx.get(f"http://localhost:{server.port}/v1/models", timeout=30).status_code == 200


def test_without_keys_the_body_user_is_not_recorded_as_the_user(client, server):
    client.completions.create(model="tiny", prompt="who am i", max_tokens=1, user="u-victim")
    row = request_log_rows(server)[-1]
    assert row["user_id"] is None
    assert json.loads(row["params"])["user"] == "u-victim"  # kept, as what the client said


# -- item 5: a non-streamed client that leaves -------------------------------------------------


def test_a_client_leaving_a_non_streamed_request_stops_decoding(server):
    engine = server.state.engine
    body = json.dumps({"model": "tiny", "prompt": "a long one, not streamed", "max_tokens": 450}).encode()
    request = (f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    gate = Gate(engine)  # the engine holds the request before decoding it, until the client has gone
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(request)
            gate.wait_until(lambda: len(gate.batches) == 1)
        # Before: nothing noticed the client leave, and the row stayed "started" until 450 tokens were decoded.
        gate.wait_until(lambda: request_log_rows(server)[-1]["status"] == "cancelled")
    finally:
        gate.open()
        engine.before_batch = None
    row = request_log_rows(server)[-1]
    assert json.loads(row["prompt"]) == "a long one, not streamed" and row["completion_tokens"] == 0


# -- item 6: prompts per request -----------------------------------------------------------------


def test_more_choices_than_the_cap_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="tiny", prompt=["a", "b", "c", "d"], n=2, max_tokens=1)
    assert "at most 6" in info.value.message and info.value.param == "prompt"
    assert len(client.completions.create(model="tiny", prompt=["a", "b", "c"], n=2, max_tokens=1).choices) == 6


# -- item 7: blank prompts and text that is not Unicode --------------------------------------------


@pytest.mark.parametrize("prompt", ["", "   \n\t", ["fine", " "]])
def test_a_blank_prompt_is_a_400_and_not_logged(server, prompt):
    before = len(request_log_rows(server))
    error = _error(_post(server, {"model": "tiny", "prompt": prompt, "max_tokens": 1}), 400)
    assert error["param"] == "prompt" and "empty" in error["message"]
    assert len(request_log_rows(server)) == before


def test_blank_chat_messages_are_a_400(server):
    body = {"model": "tiny", "messages": [{"role": "system", "content": ""}, {"role": "user", "content": " "}]}
    assert _error(_post(server, body, "/chat/completions"), 400)["param"] == "messages"


@pytest.mark.parametrize("body, param", [
    ('{"model": "tiny", "prompt": "x \\ud800 y", "max_tokens": 1}', "prompt"),
    ('{"model": "tiny", "prompt": ["ok", "\\udfff"], "max_tokens": 1}', "prompt.1"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": "a\\ud83d"}]}', "messages.0.content"),
])
def test_a_lone_surrogate_is_a_400_naming_the_field(server, body, param):
    path = "/chat/completions" if "messages" in body else "/completions"
    before = len(request_log_rows(server))
    error = _error(_post(server, body, path), 400)
    assert error["param"] == param and "surrogate" in error["message"]
    assert len(request_log_rows(server)) == before


def test_an_unexpected_error_is_a_json_500(server, monkeypatch):
    def broken(text):
        raise RuntimeError("boom")

    monkeypatch.setattr(server.state.engine, "encode_text", broken)
    error = _error(_post(server, {"model": "tiny", "prompt": "hi", "max_tokens": 1}), 500)
    assert error["type"] == "server_error" and "boom" not in error["message"]  # no internals leak


def test_engine_vllm_without_vllm_says_how_to_install_it(served_gpt2, tmp_path, capsys):
    import importlib.util

    from rlhf.serve.cli import main

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    args = ["--model", str(served_gpt2), "--engine", "vllm", "--log-prompts", str(tmp_path / "p.db")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlhf serve: vLLM is not installed") and "bash scripts/setup.sh --vllm" in err
