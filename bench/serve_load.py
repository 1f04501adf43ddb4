"""Load `sentiment serve` on 127.0.0.1 with wrk (a C load generator, one thread, so it leaves the cores to
the server): 1 and 32 connections each sending one test sentence per request for a fixed time; prints
p50/p90/p99 latency and sentences/s beside the offline rates of the same form measured in the same run
(batched, and one sentence at a time). Offline, it also times rounds of 32 texts (one per connection) in
random order run as one padded call against the same rounds sorted by length and cut into `serve.batch_size` calls
(what the server does), and counts the test texts whose label changes between alone and in sorted batches
at batch sizes 8, 16 and 64 (a dynamic int8 form quantizes activations per batch, so a label near the boundary can
depend on its batch; the static default does not).
Before the load, a Python client checks that the server's answers equal the offline ones, text by text.
Prints, asserts nothing.

    python bench/serve_load.py --dataset sst2 [--form auto] [--seconds 15] [--save NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from record import save
from sentiment.config import Params
from sentiment.data.datasets import read_clean
from sentiment.data.text import CleanConfig
from sentiment.machine import describe, machine
from sentiment.serving.export import ExportConfig, scored_batch_sizes
from sentiment.serving.forms import FORM_CHOICES, ServedBatchSize
from sentiment.serving.long_text import PredictConfig
from sentiment.serving.runtime import FinetuneScorer
from sentiment.serving.server import ServeConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def offline_rates(predictor: FinetuneScorer, texts: list[str]) -> tuple[float, float]:
    """(batched sentences/s, one-sentence p50 ms) of the form, no HTTP (batched: best of two passes)."""
    predictor.probabilities(texts[: predictor.batch_size])  # warm-up
    best = 0.0
    for _ in range(2):
        start = time.perf_counter()
        predictor.probabilities(texts)
        best = max(best, len(texts) / (time.perf_counter() - start))
    single = []
    for text in texts[:200]:
        start = time.perf_counter()
        predictor.probabilities([text])
        single.append(time.perf_counter() - start)
    return best, 1000 * float(np.median(single))


def round_rates(predictor: FinetuneScorer, texts: list[str], round_size: int, batch_size: int) -> dict[str, float]:
    """Sentences/s over rounds of `round_size` texts in seeded random order: each round as one padded call,
    and each round length-sorted in calls of `batch_size` texts."""
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    rounds = [[texts[i] for i in order[start : start + round_size]] for start in range(0, len(order), round_size)]
    rates = {}
    for name, size in (("one_call_per_round", round_size), ("sorted_calls_per_round", batch_size)):
        predictor.batch_size = size
        start = time.perf_counter()
        for chunk in rounds:
            predictor.probabilities(chunk)
        rates[name] = len(texts) / (time.perf_counter() - start)
    return rates


def batch_dependence(predictor: FinetuneScorer, texts: list[str], batch_sizes: list[int]) -> dict[str, object]:
    """Test labels changed between scored alone and in length-sorted batches of each size the export gate scores, and the largest
    change of a probability (the export gate's figures, for the served form)."""
    alone = None
    changes, largest = {}, 0.0
    for size in batch_sizes:
        predictor.batch_size = size
        probs = predictor.probabilities(texts)
        if alone is None:
            alone = probs
            continue
        changes[str(size)] = int((probs.argmax(1) != alone.argmax(1)).sum())
        largest = max(largest, float(np.abs(probs - alone).max()))
    return {"label_changes_vs_batch_1": changes, "max_probability_change_vs_batch_1": largest}


def lua_script(texts: list[str], path: Path) -> None:
    """A wrk script that POSTs one text per request, cycling through `texts`."""
    bodies = ",\n".join("[==[" + json.dumps({"texts": [t]}) + "]==]" for t in texts)
    path.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"local bodies = {{\n{bodies}\n}}\nlocal i = 0\n"
        "request = function()\n  i = i % #bodies + 1\n  return wrk.format(nil, '/v1/predict', nil, bodies[i])\nend\n"
    )


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    """One wrk run: requests/s, latency percentiles (ms) and non-2xx count, parsed from its --latency report."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    row = {"connections": connections, "seconds": seconds}
    for q, value, unit in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M):
        row[f"p{q}_ms"] = float(value) * UNITS[unit]
    row["sentences_per_s"] = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    row["non_2xx"] = int(errors.group(1)) if errors else 0
    return row


def check_answers(url: str, predictor: FinetuneScorer, texts: list[str]) -> int:
    """Requests whose labels differ from the offline Predictor's on the text alone (one text each, a Python
    client sending one request at a time, so the server too runs each text alone)."""
    expected = [predictor.answers([t])[0]["label"] for t in texts]
    with httpx.Client(base_url=url, timeout=60) as client:
        got = [client.post("/v1/predict", json={"texts": [t]}).json()["predictions"][0]["label"] for t in texts]
    return sum(g != e for g, e in zip(got, expected, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--form", default="auto", choices=FORM_CHOICES)
    parser.add_argument("--seconds", type=int, default=15, help="wrk's duration per connection count")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--save", metavar="NAME", help="also write docs/results/serve_load_NAME.json")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("error: wrk not found (Debian: apt-get install wrk)")
    params = Params.load()
    cfg = params.section(ServeConfig, "serve")
    texts = read_clean(args.dataset, "test")["text"].tolist()
    reading = params.section(PredictConfig, "predict")
    predictor = FinetuneScorer(args.dataset, args.form, params.section(CleanConfig, "clean").light(), reading, 64)
    offline, single_ms = offline_rates(predictor, texts)
    rounds = round_rates(predictor, texts, min(32, cfg.max_batch), cfg.batch_size)
    sizes = scored_batch_sizes(params.section(ExportConfig, "export"), [cfg, params.section(ServedBatchSize, "predict")])
    dependent = batch_dependence(predictor, texts, sizes)
    port = free_port()
    cmd = [sys.executable, "-m", "sentiment.cli", "serve", "--dataset", args.dataset, "--form", predictor.form]
    server = subprocess.Popen([*cmd, "--port", str(port)], env={**os.environ, "PYTHONWARNINGS": "ignore"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise SystemExit("error: the server did not start")
            time.sleep(0.3)
        mismatches = check_answers(url, predictor, texts[:100])
        del predictor  # its threads would compete with the server's
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "post.lua"
            lua_script(texts, script)
            wrk(url, script, 8, 3)  # warm-up
            rows = [wrk(url, script, c, args.seconds) for c in args.connections]
    finally:
        server.terminate()
        server.wait(timeout=60)
    m = machine()
    print(f"{describe(m)}; {args.dataset}, form {args.form} -> {cmd[-1]}")
    print(f"server max_batch {cfg.max_batch}, batch_size {cfg.batch_size}")
    print(f"offline: batched {offline:.0f} sentences/s, one sentence p50 {single_ms:.2f} ms; answers differing: {mismatches}/100")
    print(f"offline rounds of 32 random texts: one call {rounds['one_call_per_round']:.0f}/s, "
          f"sorted calls of {cfg.batch_size} {rounds['sorted_calls_per_round']:.0f}/s")  # fmt: skip
    print(f"labels changed between a text alone and in sorted batches of 8/16/64: {dependent['label_changes_vs_batch_1']}, "
          f"largest probability change {dependent['max_probability_change_vs_batch_1']:.2g}")  # fmt: skip
    print("| connections | p50 ms | p90 ms | p99 ms | sentences/s | of offline batched | non-2xx |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['connections']} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | "
              f"{r['sentences_per_s']:.0f} | {r['sentences_per_s'] / offline:.2f}x | {r['non_2xx']} |")  # fmt: skip
    if args.save:
        record = {"machine": m, "dataset": args.dataset, "form": args.form, "served_form": cmd[-1], "serve": cfg.model_dump(),
                  "offline_sentences_per_s": offline, "offline_single_p50_ms": single_ms, "answers_differing": mismatches,
                  "offline_rounds_of_32": rounds, "labels_batch_dependent": dependent,
                  "load_generator": "wrk -t1", "levels": rows}  # fmt: skip
        save("serve_load", args.save, record)


if __name__ == "__main__":
    main()
