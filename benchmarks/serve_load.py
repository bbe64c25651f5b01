"""Load test of `c2c serve` on loopback: concurrency levels, then an overload run past `--max_queue`.

Starts `c2c serve` itself (on 127.0.0.1, a free port) with the model arguments after `--`, sends
streaming greedy chat requests from N concurrent clients, and reports per level: requests/s,
generated tokens/s, p50/p99 latency and time to first token, and non-2xx responses by status. The
overload run restarts the server with a small queue and sends more concurrent requests than it
holds: they must get 429 (never 5xx) while the server's RSS stays bounded. Every level is bounded
in request count and duration, so the script stops by itself.

    python benchmarks/serve_load.py --levels 1,4,16 --requests 48 -- --fuser c2c_demo/fuser/final
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter

import httpx

PROMPTS = ["where does {} live ?", "what is the job of {} ?", "which colour does {} like ?"]
NAMES = ["sazera", "bolime", "tavuro", "kenasi", "dorupa", "mifalo", "zerika", "polumo"]


def start_server(model_args: list[str], extra: list[str]) -> tuple[subprocess.Popen, str]:
    """`c2c serve` on 127.0.0.1:0; returns the process and its base URL once /health is ready."""
    argv = [
        sys.executable,
        "-m",
        "cache2cache.cli.main",
        "serve",
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        *model_args,
        *extra,
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = proc.stdout.readline().split("listening on ")[1].split()[0]
    deadline = time.monotonic() + 600
    while httpx.get(url + "/health").status_code != 200:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("the server did not become ready")
        time.sleep(0.2)
    return proc, url


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid` in MiB (Linux)."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


async def one_request(client: httpx.AsyncClient, url: str, body: dict) -> dict:
    start = time.perf_counter()
    first = None
    tokens = 0
    async with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            return {"status": response.status_code, "latency": time.perf_counter() - start}
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("error"):
                return {"status": event["error"].get("code") or "stream-error", "latency": time.perf_counter() - start}
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            if first is None and any(c.get("delta", {}).get("content") for c in event.get("choices", [])):
                first = time.perf_counter() - start
    return {"status": 200, "latency": time.perf_counter() - start, "ttft": first, "tokens": tokens}


async def run_level(url: str, concurrency: int, requests: int, duration_s: float, mode: str, max_tokens: int) -> dict:
    """`requests` requests from `concurrency` clients (or until `duration_s`); the level's figures."""
    results: list[dict] = []
    counter = iter(range(requests))
    deadline = time.perf_counter() + duration_s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client_loop(client: httpx.AsyncClient) -> None:
        for i in counter:
            if time.perf_counter() > deadline:
                return
            prompt = PROMPTS[i % len(PROMPTS)].format(NAMES[(i // len(PROMPTS)) % len(NAMES)])
            body = {"model": mode, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0,
                    "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
            try:
                results.append(await one_request(client, url, body))
            except httpx.HTTPError as err:
                results.append({"status": type(err).__name__, "latency": 0.0})

    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    ok = [r for r in results if r["status"] == 200]
    lat = sorted(r["latency"] for r in ok)
    ttft = sorted(r["ttft"] for r in ok if r.get("ttft") is not None)

    def pct(values: list[float], q: float) -> float:
        return 1e3 * values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")

    return {
        "concurrency": concurrency, "requests": len(results), "seconds": round(elapsed, 2),
        "requests_per_s": round(len(ok) / elapsed, 2), "tokens_per_s": round(sum(r["tokens"] for r in ok) / elapsed, 1),
        "p50_ms": round(pct(lat, 0.5), 1), "p99_ms": round(pct(lat, 0.99), 1),
        "ttft_p50_ms": round(pct(ttft, 0.5), 1), "ttft_p99_ms": round(pct(ttft, 0.99), 1),
        "non_2xx": dict(Counter(str(r["status"]) for r in results if r["status"] != 200)),
    }  # fmt: skip


def batch_mean(url: str) -> tuple[float, float]:
    """(sum, count) of the server's batch-size histogram."""
    text = httpx.get(url + "/metrics").text
    value = {
        line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line.startswith("c2c_batch_size_")
    }
    return value.get("c2c_batch_size_sum", 0.0), value.get("c2c_batch_size_count", 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,4,16", help="comma-separated concurrency levels")
    parser.add_argument("--requests", type=int, default=48, help="requests per level (bound)")
    parser.add_argument("--duration_s", type=float, default=120, help="longest time per level (bound)")
    parser.add_argument("--mode", default="c2c", help="the model field: c2c, receiver, sharer or t2t")
    parser.add_argument("--max_tokens", type=int, default=16)
    parser.add_argument("--max_batch_size", type=int, default=16)
    parser.add_argument("--overload", type=int, default=64, help="clients in the overload run (0: skip it)")
    parser.add_argument("--overload_queue", type=int, default=8, help="the server's --max_queue in the overload run")
    parser.add_argument("model_args", nargs=argparse.REMAINDER, help="after --: the model arguments of c2c serve")
    args = parser.parse_args()
    model_args = [a for a in args.model_args if a != "--"]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    proc, url = start_server(model_args, ["--max_batch_size", str(args.max_batch_size), "--max_queue", "1024"])
    rows = []
    try:
        asyncio.run(run_level(url, 2, 4, 60, args.mode, args.max_tokens))  # warm-up, not reported
        for level in [int(x) for x in args.levels.split(",")]:
            before = batch_mean(url)
            row = asyncio.run(run_level(url, level, args.requests, args.duration_s, args.mode, args.max_tokens))
            after = batch_mean(url)
            row["mean_batch"] = round((after[0] - before[0]) / max(after[1] - before[1], 1), 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        proc.terminate()
        proc.wait(120)
    if args.overload:
        proc, url = start_server(
            model_args, ["--max_batch_size", str(args.max_batch_size), "--max_queue", str(args.overload_queue)]
        )
        peak = [rss_mb(proc.pid)]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.1):
                peak.append(rss_mb(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            row = asyncio.run(
                run_level(url, args.overload, args.overload * 4, args.duration_s, args.mode, args.max_tokens)
            )
        finally:
            stop.set()
            sampler.join()
            proc.terminate()
            code = proc.wait(120)
        row.update(overload_queue=args.overload_queue, rss_start_mb=round(peak[0], 1), rss_peak_mb=round(max(peak), 1),
                   exit_code_after_sigterm=code)  # fmt: skip
        print(json.dumps(row), flush=True)
    if rows:
        base = rows[0]["requests_per_s"]
        print(
            f"throughput vs concurrency {rows[0]['concurrency']}: "
            + ", ".join(f"{r['concurrency']}: {r['requests_per_s'] / base:.2f}x" for r in rows)
        )


if __name__ == "__main__":
    main()
