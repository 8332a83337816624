"""Throughput and latency of `rlhf serve` under concurrent clients, on loopback, per engine.

    python benchmarks/serve_load.py [--engines native,vllm] [--rounds 1] [--model DIR]
        [--clients 16] [--requests 4] [--max-tokens 32] [--max-batch-size N]

Starts one server per engine in this process on 127.0.0.1 (free ports), then N client threads each send R completion requests back to back (greedy, fixed max_tokens; the
API cannot ignore EOS, so tokens are counted from usage). Prints completion tokens/s and
p50/p95 request latency per engine and round, with the 1-minute load average before and after
each run (on a shared machine the numbers move with it; --rounds R alternates the engines R
times so that both meet the same load). --max-batch-size defaults to the number of
clients (vLLM: its max_num_seqs); 1 measures our engine without batching. The vllm engine
needs vLLM (run this with .venv-vllm/bin/python). Without --model a random GPT-2-shaped model
(4 layers, width 256) is built offline in a temp folder. Bounded: N x R requests per engine,
each with a 300 s timeout; nothing leaves the machine."""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import threading
import time

import httpx


def start_server(state):
    import uvicorn

    from rlhf.serve.app import create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(state), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def load(base_url: str, model: str, clients: int, requests: int, max_tokens: int) -> dict:
    latencies, tokens, errors = [], [], []
    barrier = threading.Barrier(clients)

    def client(c: int) -> None:
        with httpx.Client(timeout=300) as http:
            barrier.wait()
            for r in range(requests):
                body = {"model": model, "prompt": f"client {c} request {r}: write a short story about a bear",
                        "max_tokens": max_tokens, "temperature": 0}
                t0 = time.perf_counter()
                resp = http.post(base_url + "/completions", json=body)
                latencies.append(time.perf_counter() - t0)
                if resp.status_code != 200:
                    errors.append(resp.text)
                    continue
                tokens.append(resp.json()["usage"]["completion_tokens"])

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    p95 = statistics.quantiles(latencies, n=20)[18] if len(latencies) > 1 else latencies[0]
    return {"requests": len(latencies), "errors": len(errors), "tokens": sum(tokens), "wall_s": wall,
            "tokens_per_s": sum(tokens) / wall, "p50_s": statistics.median(latencies), "p95_s": p95}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", default="native", help="comma-separated: native, vllm")
    parser.add_argument("--model", help="model folder (default: a random GPT-2-shaped model built offline)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=4, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-batch-size", type=int, help="rows decoded together (default: --clients)")
    parser.add_argument("--batch-wait-ms", type=float, default=10.0, help="native only")
    parser.add_argument("--kv-cache-gb", type=float, default=0.5, help="vllm only")
    parser.add_argument("--device", default="auto", help="native only")
    parser.add_argument("--rounds", type=int, default=1, help="load runs per engine, the engines taking turns")
    args = parser.parse_args()

    model = args.model
    if model is None:
        from rlhf.core.tiny import build_tiny_model

        model = str(build_tiny_model(tempfile.mkdtemp(prefix="serve-bench-"), arch="gpt2", n_layer=4, d_model=256,
                                     n_head=4))
    batch = args.max_batch_size or args.clients
    print(f"model {model}: {args.clients} clients x {args.requests} requests, max_tokens {args.max_tokens}, "
          f"max_batch_size {batch}, {os.cpu_count()} CPUs, {args.rounds} rounds", flush=True)
    servers = {}
    try:
        for engine in args.engines.split(","):
            servers[engine] = start_engine(engine, model, batch, args)
        # Rounds alternate the engines, so a change in the machine's load hits both alike.
        for _ in range(args.rounds):
            for engine, (state, _, _, url) in servers.items():
                before = os.getloadavg()[0]
                result = load(url, "bench", args.clients, args.requests, args.max_tokens)
                print(f"{engine:<7} {result['tokens_per_s']:8.1f} tokens/s  p50 {result['p50_s']:.2f} s  "
                      f"p95 {result['p95_s']:.2f} s  load average {before:.1f} -> {os.getloadavg()[0]:.1f}  "
                      f"({result['requests']} requests, {result['errors']} errors, {result['tokens']} tokens in "
                      f"{result['wall_s']:.1f} s{batches(state.engine.stats)})", flush=True)
    finally:
        for state, server, thread, _ in servers.values():
            server.should_exit = True
            thread.join(timeout=10)
            state.engine.close()


def start_engine(engine: str, model: str, batch: int, args):
    """(state, server, thread, url) of a started server on `engine`, warmed up."""
    from rlhf.serve.cli import build_state

    log_dir = tempfile.mkdtemp(prefix="serve-bench-log-")
    settings = ({"kv_cache_gb": args.kv_cache_gb} if engine == "vllm" else
                {"batch_wait_ms": args.batch_wait_ms, "device": args.device})
    t0 = time.perf_counter()
    state = build_state(model, model_name="bench", log_prompts=f"{log_dir}/prompts.db", max_batch_size=batch,
                        engine=engine, **settings)
    server, thread, url = start_server(state)
    load(url, "bench", 1, 1, 4)  # warm-up
    print(f"{engine}: engine started in {time.perf_counter() - t0:.0f} s", flush=True)
    return state, server, thread, url


def batches(stats: dict) -> str:
    """Rows per batch so far (our engine counts batches; vLLM's continuous batching has none)."""
    return f"; {stats['rows'] / stats['batches']:.1f} rows per batch so far" if stats["batches"] else ""


if __name__ == "__main__":
    main()
