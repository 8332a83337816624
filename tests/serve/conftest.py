"""A real uvicorn server on a free loopback port, in a thread, per test module."""

from __future__ import annotations

import socket
import threading
import time

import pytest


class ServerThread:
    def __init__(self, state):
        import uvicorn

        from rlhf.serve.app import create_app

        self.state = state
        # Bind first and hand uvicorn the socket: no race for the port with other tests.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(create_app(state), log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.state.engine.close()
        if self.state.request_log is not None:
            self.state.request_log.close()


# The engines a test parametrized over them runs on; the vLLM side only where vLLM is installed
# (.venv-vllm/, `bash scripts/setup.sh --vllm`; CI's `.ci/run` runs `-m vllm tests/serve` there).
ENGINES = ["native", pytest.param("vllm", marks=pytest.mark.vllm)]
# float32 so both engines compute the same numbers up to kernel rounding; a small KV cache on a shared machine.
VLLM_SETTINGS = {"dtype": "float32", "kv_cache_gb": 0.25}


@pytest.fixture(scope="session")
def served_gpt2(tiny_model_factory):
    """The model every serve test serves: the tiny GPT-2 at a head size vLLM's CPU attention takes (32;
    the suite's default has 16), so the same tests run on both engines."""
    from tests.engines.conftest import VLLM_SHAPE

    return tiny_model_factory("gpt2", **VLLM_SHAPE)


@pytest.fixture(scope="module")
def serve(served_gpt2, tmp_path_factory):
    """serve(engine="native", **build_state kwargs) -> a started ServerThread (closed at module end)."""
    from rlhf.serve.cli import build_state

    servers = []

    def start(engine: str = "native", **kwargs):
        kwargs.setdefault("log_prompts", str(tmp_path_factory.mktemp("log") / "prompts.db"))
        kwargs.setdefault("model_name", "tiny")
        kwargs.setdefault("model", str(served_gpt2))
        if engine == "vllm":
            pytest.importorskip("vllm")
            kwargs = {**VLLM_SETTINGS, **kwargs}
        else:
            kwargs.setdefault("device", "cpu")
        server = ServerThread(build_state(engine=engine, **kwargs)).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def greedy_reference(model_dir):
    """reference(prompt_or_messages, max_tokens) -> greedy text from `model.generate`, one prompt alone."""
    import torch

    from rlhf.core.models import load_causal_lm, load_tokenizer

    tok = load_tokenizer(str(model_dir))
    model = load_causal_lm(str(model_dir)).eval()

    def generate(prompt, max_tokens: int) -> str:
        if isinstance(prompt, list):
            text = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
            ids = tok(text, add_special_tokens=False, return_tensors="pt")
        else:
            ids = tok(prompt, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)

    return generate


@pytest.fixture(scope="module")
def reference(served_gpt2):
    return greedy_reference(served_gpt2)


class Gate:
    """An engine hook (`Engine.before_batch`) that records every batch and holds the worker before
    decoding until opened. With a plug request held there, a test queues exactly the requests it
    wants, then opens the gate: what shares the next batch no longer depends on arrival timing."""

    def __init__(self, engine):
        import threading

        self.engine, self.batches, self.opened = engine, [], threading.Event()
        engine.before_batch = self

    def __call__(self, jobs) -> None:
        self.batches.append(jobs)
        assert self.opened.wait(timeout=120), "the test never opened the gate"

    def hold(self, submit_plug) -> None:
        """Call `submit_plug()` (one small request) and wait until the worker is held with it."""
        submit_plug()
        self.wait_until(lambda: len(self.batches) == 1)

    def wait_until(self, condition, timeout: float = 60) -> None:
        import time

        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "condition not reached"
            time.sleep(0.01)

    def open(self) -> None:
        self.opened.set()
