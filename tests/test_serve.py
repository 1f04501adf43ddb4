"""`sentiment serve` on a tiny model: the same answers as `sentiment predict`, concurrent requests batched
and returned complete and in order, a lone request run at once, a full queue a 503, every bad input a
one-line 4xx while the server goes on serving, Prometheus metrics, the bearer token, and SIGTERM lets an
in-flight request finish."""

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
from sentiment.serving.predictor import Predictor
from sentiment.serving.server import ContinuousBatcher, QueueFull, ServeConfig, create_app, model_info

TEXTS = ["a good great film", "bad awful plot", "the story", "lovely , wonderful , excellent acting", "dreadful"]


@pytest.fixture
def served(saved_model):
    in_tmp = saved_model
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(params))
    return in_tmp


def app_for(key="toy", token=None, **limits):
    cfg = ServeConfig(**limits)
    predictor = Predictor(key, "torch", cfg.batch_size)
    return create_app(predictor, cfg, model_info(key, predictor), token)


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
    responses = asyncio.run(calls(app_for(max_batch=16), requests))
    for i, response in enumerate(responses):
        labels = [p["label"] for p in response.json()["predictions"]]
        assert labels == [alone[i % 5]["label"], alone[(i + 2) % 5]["label"]]


def test_a_round_runs_in_length_sorted_calls_of_serve_batch_size(served):
    """The server's predictor cuts a round's texts into serve.batch_size calls by length, so a long text
    does not pad the short ones; the answers are those of one call."""
    cfg = ServeConfig(batch_size=2)
    predictor = Predictor("toy", "torch", cfg.batch_size)
    run, shapes = predictor.run, []
    predictor.run = lambda ids, mask: shapes.append(ids.shape) or run(ids, mask)
    got = predictor.answers(TEXTS)
    assert [rows for rows, _ in shapes] == [2, 2, 1]
    assert [length for _, length in shapes] == sorted(length for _, length in shapes)
    whole = Predictor("toy", "torch", len(TEXTS)).answers(TEXTS)
    assert [a["label"] for a in got] == [a["label"] for a in whole]


def test_the_batcher_runs_a_lone_request_at_once_and_gathers_those_that_wait():
    seen: list[int] = []

    def predict(texts):
        seen.append(len(texts))
        return [t.upper() for t in texts]

    async def go():
        batcher = ContinuousBatcher(predict, max_batch=8, max_queue=100)
        batcher.start()
        lone = await asyncio.wait_for(batcher.submit(["alone"]), 1)  # no wait for company when nobody else is there
        batcher.worker.submit(time.sleep, 0.2)  # the model thread busy: requests pile up
        results = await asyncio.gather(*(batcher.submit([f"t{i}", f"u{i}"]) for i in range(8)))
        await batcher.stop()
        return lone, results

    lone, results = asyncio.run(go())
    assert lone == ["ALONE"] and seen[0] == 1
    assert results == [[f"T{i}", f"U{i}"] for i in range(8)]
    assert seen[1:] == [8, 8]  # what waited ran together, max_batch texts a call


def test_a_full_queue_refuses_at_once():
    async def go():
        batcher = ContinuousBatcher(lambda texts: texts, max_batch=4, max_queue=5)  # not started: nothing drains
        waiting = asyncio.ensure_future(batcher.submit(["a"] * 4))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull, match=r"4 texts are waiting; the limit is 5 \(serve.max_queue\)"):
            await batcher.submit(["b", "c"])
        waiting.cancel()

    asyncio.run(go())


def test_a_full_queue_is_a_503_with_retry_after_and_the_server_goes_on(served):
    requests = [post(["a good film"] * 4) for _ in range(30)]
    responses = asyncio.run(calls(app_for(max_batch=4, max_queue=8), requests))
    statuses = {r.status_code for r in responses}
    assert statuses == {200, 503}
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["retry-after"] == "1" and "serve.max_queue" in refused.json()["error"]
    [after] = asyncio.run(calls(app_for(max_batch=4, max_queue=8), [post(["a good film"])]))
    assert after.status_code == 200


def test_metrics_after_requests(served):
    async def go():
        app = app_for()
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                await asyncio.gather(
                    client.post("/v1/predict", json={"texts": TEXTS}), client.post("/v1/predict", content=b"{bad")
                )
                return (await client.get("/metrics")).text

    from prometheus_client.parser import text_string_to_metric_families

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(asyncio.run(go()))
        for s in f.samples
    }
    assert samples[("sentiment_requests_total", (("status", "200"),))] == 1
    assert samples[("sentiment_requests_total", (("status", "400"),))] == 1
    assert samples[("sentiment_request_seconds_count", ())] == 2
    assert samples[("sentiment_batch_texts_count", ())] == 2  # the warm-up call and the five texts
    assert samples[("sentiment_batch_texts_sum", ())] == 1 + len(TEXTS)


def test_the_bearer_token_guards_predict_and_model_but_not_health(served):
    requests = [
        post(["a good film"]),
        ("GET", "/v1/model", None),
        ("GET", "/healthz", None),
        ("GET", "/readyz", None),
    ]
    responses = asyncio.run(calls(app_for(token="s3cret"), requests))
    assert [r.status_code for r in responses] == [401, 401, 200, 200]
    assert responses[0].headers["www-authenticate"] == "Bearer" and "bearer token" in responses[0].json()["error"]

    async def with_header(value):
        app = app_for(token="s3cret")
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.post("/v1/predict", json={"texts": ["a good film"]}, headers={"Authorization": value})

    assert asyncio.run(with_header("Bearer wrong")).status_code == 401
    assert asyncio.run(with_header("Bearer s3cret")).status_code == 200


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
    health, ready, info = asyncio.run(
        calls(app_for(), [("GET", "/healthz", None), ("GET", "/readyz", None), ("GET", "/v1/model", None)])
    )
    assert health.json() == {"status": "ok"} and ready.json() == {"status": "ready"}
    body = info.json()
    assert body["dataset"] == "toy" and body["labels"] == ["negative", "positive"] and body["form"] == "torch"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_lets_an_in_flight_request_finish(served):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "sentiment.cli", "serve", "--dataset", "toy", "--form", "torch", "--port", str(port)]
    server = subprocess.Popen(cmd, cwd=served, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        body = json.dumps({"texts": ["a good film"]}).encode()
        head = f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(head.encode() + body[:5])  # the request has begun: its body is still on the way
            time.sleep(0.5)
            server.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            conn.sendall(body[5:])
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
        status, _, rest = answer.partition(b"\r\n")
        assert status == b"HTTP/1.1 200 OK", answer[:200]
        assert len(json.loads(rest.split(b"\r\n\r\n", 1)[1])["predictions"]) == 1
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
