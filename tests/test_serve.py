"""`sentiment serve` on a tiny model: the same answers as `sentiment predict`, concurrent requests batched
and returned complete and in order, every bad input a one-line 4xx while the server goes on serving,
and SIGTERM lets an in-flight request finish."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pandas as pd
import pytest
import yaml

from conftest import REPO
from sentiment.cli import main as cli
from sentiment.predictor import Predictor
from sentiment.serving import MicroBatcher, ServeConfig, create_app, model_info

TEXTS = ["a good great film", "bad awful plot", "the story", "lovely , wonderful , excellent acting", "dreadful"]


@pytest.fixture
def served(saved_model):
    in_tmp = saved_model
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(params))
    return in_tmp


def app_for(key="toy", **limits):
    predictor = Predictor(key, "torch")
    cfg = ServeConfig(**limits)
    return create_app(predictor, cfg, model_info(key, predictor))


async def calls(app, requests: list[tuple[str, str, bytes | None]]) -> list[httpx.Response]:
    """Send the requests concurrently to the app (its lifespan, and so its batcher, running)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(*(client.request(m, url, content=body) for m, url, body in requests))


def post(texts) -> tuple[str, str, bytes]:
    return ("POST", "/v1/predict", json.dumps({"texts": texts}).encode())


def test_answers_equal_sentiment_predicts(served, capsys):
    (served / "in.txt").write_text("\n".join(TEXTS) + "\n")
    with pytest.raises(SystemExit):
        cli(["predict", "--dataset", "toy", "--input", "in.txt"])
        raise SystemExit(0)
    expected = pd.read_csv(io.StringIO(capsys.readouterr().out))
    [response] = asyncio.run(calls(app_for(), [post(TEXTS)]))
    assert response.status_code == 200
    got = response.json()["predictions"]
    assert [p["label"] for p in got] == expected["label"].tolist()
    for answer, (_, row) in zip(got, expected.iterrows(), strict=True):
        assert answer["probabilities"]["positive"] == pytest.approx(row["prob_positive"], abs=1e-6)


def test_concurrent_requests_come_back_complete_and_in_order(served):
    alone = Predictor("toy", "torch").answers(TEXTS)
    requests = [post([TEXTS[i % 5], TEXTS[(i + 2) % 5]]) for i in range(40)]
    responses = asyncio.run(calls(app_for(max_batch=16, max_wait_ms=20), requests))
    for i, response in enumerate(responses):
        labels = [p["label"] for p in response.json()["predictions"]]
        assert labels == [alone[i % 5]["label"], alone[(i + 2) % 5]["label"]]


def test_the_batcher_gathers_concurrent_requests():
    seen: list[int] = []

    def predict(texts):
        seen.append(len(texts))
        return [t.upper() for t in texts]

    async def go():
        batcher = MicroBatcher(predict, max_batch=8, max_wait_ms=50)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit([f"t{i}", f"u{i}"]) for i in range(8)))
        await batcher.stop()
        return results

    results = asyncio.run(go())
    assert results == [[f"T{i}", f"U{i}"] for i in range(8)]
    assert len(seen) < 8 and max(seen) <= 8 + 1  # batches of several requests, capped near max_batch


def test_every_bad_input_is_a_one_line_4xx_and_the_server_goes_on(served):
    bad = [
        ("POST", "/v1/predict", b"{not json"),
        ("POST", "/v1/predict", b'{"texts": "one string"}'),
        ("POST", "/v1/predict", b'{"texts": []}'),
        ("POST", "/v1/predict", b'{"texts": ["fine", 3]}'),
        ("POST", "/v1/predict", b'["no", "object"]'),
        ("POST", "/v1/predict", b'{"texts": ["bad \xff bytes"]}'),
        post(["x"] * 11),
        post(["x" * 101]),
        ("POST", "/v1/predict", b'{"texts": ["' + b"y" * 600 + b'"]}'),
        ("GET", "/v1/predict", None),
        ("GET", "/nowhere", None),
    ]
    responses = asyncio.run(calls(app_for(max_texts=10, max_chars=100, max_body_bytes=500), [*bad, post(["a good film"])]))
    for (method, url, body), response in zip(bad, responses[:-1], strict=True):
        assert 400 <= response.status_code < 500, (body, response.status_code)
        if url == "/v1/predict" and method == "POST":
            message = response.json()["error"]
            assert message and "\n" not in message
    statuses = [r.status_code for r in responses[:-1]]
    assert statuses[:9] == [400, 422, 422, 422, 422, 400, 413, 413, 413]
    assert responses[-1].status_code == 200 and responses[-1].json()["predictions"][0]["label"] in ("negative", "positive")


def test_model_info_names_the_model(served):
    health, info = asyncio.run(calls(app_for(), [("GET", "/healthz", None), ("GET", "/v1/model", None)]))
    assert health.json() == {"status": "ok"}
    body = info.json()
    assert body["dataset"] == "toy" and body["labels"] == ["negative", "positive"] and body["form"] == "torch"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_lets_an_in_flight_request_finish(served):
    params = yaml.safe_load((served / "params.yaml").read_text())
    params["serve"]["max_wait_ms"] = 1500  # the request waits in the batcher while SIGTERM arrives
    (served / "params.yaml").write_text(yaml.safe_dump(params))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "sentiment.cli", "serve", "--dataset", "toy", "--form", "torch", "--port", str(port)]
    server = subprocess.Popen(cmd, cwd=served, env=env, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)

        async def request_then_sigterm():
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                pending = asyncio.ensure_future(client.post("/v1/predict", json={"texts": ["a good film"]}))
                await asyncio.sleep(0.5)
                server.send_signal(signal.SIGTERM)
                return await pending

        response = asyncio.run(request_then_sigterm())
        assert response.status_code == 200 and len(response.json()["predictions"]) == 1
        # uvicorn finishes the request, shuts down, then re-raises SIGTERM so the exit status tells why it stopped
        assert server.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if server.poll() is None:
            server.kill()


def test_a_lone_surrogate_and_deeply_nested_json_are_a_400_not_a_500(served):
    bad = [
        ("POST", "/v1/predict", b'{"texts": ["fine", "\\ud800 alone"]}'),  # valid JSON, not valid Unicode
        ("POST", "/v1/predict", b'{"texts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),  # past Python's recursion limit
    ]
    responses = asyncio.run(calls(app_for(max_body_bytes=1_000_000), [*bad, post(["a good film"])]))
    assert [r.status_code for r in responses[:-1]] == [400, 400]
    assert "texts[1] has a lone surrogate" in responses[0].json()["error"]
    assert "nested too deeply" in responses[1].json()["error"]
    assert responses[-1].status_code == 200
