"""Load `sentiment serve` on 127.0.0.1: 1, 8 and 32 concurrent clients each sending one test sentence per
request, a fixed number of requests per level; prints p50/p95/p99 latency and sentences/s beside the
offline batched throughput of the same form measured in the same run. Prints, asserts nothing.

    python bench/serve_load.py --dataset sst2 --form onnx_int8 [--requests 400] [--save NAME]

The clients run on the same machine as the server (2 cores here), so they take CPU from it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import typing
from pathlib import Path

import httpx
import numpy as np

from sentiment.config import load_params, section
from sentiment.data import read_clean
from sentiment.forms import Form
from sentiment.predictor import Predictor
from sentiment.serving import ServeConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def offline_throughput(dataset: str, form: str, texts: list[str], batch: int) -> float:
    """Sentences/s of the form over length-sorted batches, no HTTP (best of two passes)."""
    predictor = Predictor(dataset, form, batch)
    predictor.probabilities(texts[:batch])  # warm-up
    best = 0.0
    for _ in range(2):
        start = time.perf_counter()
        predictor.probabilities(texts)
        best = max(best, len(texts) / (time.perf_counter() - start))
    return best


async def load(url: str, texts: list[str], clients: int, requests: int) -> tuple[np.ndarray, float]:
    """(latencies in seconds, wall seconds) for `requests` one-text requests from `clients` concurrent clients."""
    latencies: list[float] = []
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def worker() -> None:
            for i in counter:
                start = time.perf_counter()
                response = await client.post("/v1/predict", json={"texts": [texts[i % len(texts)]]})
                response.raise_for_status()
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return np.array(latencies), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--form", default="onnx_int8", choices=typing.get_args(Form))
    parser.add_argument("--requests", type=int, default=400, help="requests per concurrency level")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--save", metavar="NAME", help="also write docs/results/serve_load_NAME.json")
    args = parser.parse_args()
    cfg = section(ServeConfig, load_params(), "serve")
    texts = read_clean(args.dataset, "test")["text"].tolist()
    offline = offline_throughput(args.dataset, args.form, texts, cfg.max_batch)
    port = free_port()
    cmd = [sys.executable, "-m", "sentiment.cli", "serve", "--dataset", args.dataset, "--form", args.form, "--port", str(port)]
    server = subprocess.Popen(cmd, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        deadline = time.time() + 180
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.3)
        asyncio.run(load(url, texts, 4, 40))  # warm-up
        for clients in args.clients:
            latencies, wall = asyncio.run(load(url, texts, clients, args.requests))
            p50, p95, p99 = (1000 * float(np.percentile(latencies, q)) for q in (50, 95, 99))
            rows.append({"clients": clients, "requests": args.requests, "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
                         "sentences_per_s": args.requests / wall})  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(f"{args.dataset}, form {args.form}: offline batched {offline:.0f} sentences/s "
          f"(batch {cfg.max_batch}); server max_batch {cfg.max_batch}, max_wait_ms {cfg.max_wait_ms}")  # fmt: skip
    print("| clients | requests | p50 ms | p95 ms | p99 ms | sentences/s | of offline batched |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['clients']} | {r['requests']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | "
              f"{r['sentences_per_s']:.0f} | {r['sentences_per_s'] / offline:.0%} |")  # fmt: skip
    if args.save:
        out = Path("docs/results") / f"serve_load_{args.save}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "dataset": args.dataset,
            "form": args.form,
            "offline_sentences_per_s": offline,
            "serve": cfg.model_dump(),
            "levels": rows,
        }
        out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
