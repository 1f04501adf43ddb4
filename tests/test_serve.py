"""`sentiment serve` on a tiny model: the same answers as `sentiment predict`, concurrent requests batched
and returned complete and in order, a lone request run at once, a full queue a 503, every bad input a
one-line 4xx while the server goes on serving (huge integers, bodies over the limit chunked or not), a
model error a counted 503 after which the server goes on, /readyz loading until the warm-up call has
answered, a cap on connections, quiet client disconnects, Prometheus metrics, the bearer token, the TEI
route through huggingface_hub's real client, and SIGTERM lets an in-flight request finish."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, truncated_logits
from sentiment.cli import main as cli
from sentiment.config import Params
from sentiment.serving.server import (
    ContinuousBatcher,
    QueueFull,
    ServeConfig,
    create_app,
    load_scorer,
    model_info,
    uvicorn_config,
)

TEXTS = ["a good great film", "bad awful plot", "the story", "lovely , wonderful , excellent acting", "dreadful"]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.fixture
def served(saved_model):
    in_tmp = saved_model
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    return in_tmp


def serve_config(**limits) -> ServeConfig:
    """params.yaml's `serve`, with `limits` in place of its values."""
    return ServeConfig(**{**PARAMS["serve"], **limits})


def scorer_for(cfg: ServeConfig, key: str = "toy"):
    return load_scorer(key, "torch", cfg, Params.load())


def app_for(key="toy", token=None, scorer=None, **limits):
    cfg = serve_config(**limits)
    scorer = scorer or scorer_for(cfg, key)
    return create_app(scorer, cfg, model_info(key, scorer), token)


async def until_ready(client: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 60
    while (await client.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, "the warm-up call never answered"
        await asyncio.sleep(0.01)


async def calls(app, requests: list[tuple[str, str, bytes | None]], headers=None) -> list[httpx.Response]:
    """Send the requests concurrently to the app (its lifespan, and so its batcher, running) once it is ready."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await until_ready(client)
            return await asyncio.gather(*(client.request(m, url, content=body, headers=headers) for m, url, body in requests))


def post(texts) -> tuple[str, str, bytes]:
    return ("POST", "/v1/predict", json.dumps({"texts": texts}).encode())


def metric_samples(exposition: str) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(exposition) for s in f.samples
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def real_server(app, cfg: ServeConfig):
    """The app on uvicorn on a free loopback port, as `sentiment serve` runs it (uvicorn_config), in a thread;
    uvicorn's log records propagate (caplog sees them). Yields the base URL once the port is open."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn_config(app, cfg, "127.0.0.1", port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(60)


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 60
    while httpx.get(f"{url}/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the warm-up call never answered"
        time.sleep(0.01)


def assert_the_models_answer(prediction: dict, text: str) -> None:
    """`prediction` is the saved toy model's own answer for `text` (a short text cleaning leaves alone): the engine's
    torch fp32 logits, a softmax at the head's temperature worked out here, and its label."""
    from sentiment.models.classifier import load_classifier

    model, tokenizer, head = load_classifier("data/toy/finetune/model", on="cpu")
    scaled = truncated_logits(model, tokenizer, [text], head["max_length"])[0] / head["temperature"]
    exp = np.exp(scaled - scaled.max())
    probs = exp / exp.sum()
    assert prediction["label"] == head["labels"][int(probs.argmax())]
    assert prediction["probabilities"] == pytest.approx(dict(zip(head["labels"], probs, strict=True)), abs=1e-6)


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
    alone = scorer_for(serve_config()).answers(TEXTS)
    requests = [post([TEXTS[i % 5], TEXTS[(i + 2) % 5]]) for i in range(40)]
    responses = asyncio.run(calls(app_for(max_batch=16), requests))
    for i, response in enumerate(responses):
        labels = [p["label"] for p in response.json()["predictions"]]
        assert labels == [alone[i % 5]["label"], alone[(i + 2) % 5]["label"]]


def test_a_round_runs_in_length_sorted_calls_of_serve_batch_size(served):
    """The server's predictor cuts a round's texts into serve.batch_size calls by length, so a long text
    does not pad the short ones; the answers are those of one call."""
    scorer = scorer_for(serve_config(batch_size=2))
    run, shapes = scorer.run, []
    scorer.run = lambda ids, mask: shapes.append(ids.shape) or run(ids, mask)
    got = scorer.answers(TEXTS)
    assert [rows for rows, _ in shapes] == [2, 2, 1]
    assert [length for _, length in shapes] == sorted(length for _, length in shapes)
    whole = scorer_for(serve_config(batch_size=len(TEXTS))).answers(TEXTS)
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


def test_metrics_count_requests_by_route_and_status_and_texts_by_round_and_call(served):
    async def go():
        app = app_for(batch_size=2)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                await until_ready(client)
                await asyncio.gather(
                    client.post("/v1/predict", json={"texts": TEXTS}),
                    client.post("/v1/predict", content=b"{bad"),
                    client.post("/predict", json={"inputs": "a good film"}),
                )
                return (await client.get("/metrics")).text

    samples = metric_samples(asyncio.run(go()))
    assert samples[("sentiment_requests_total", (("route", "/v1/predict"), ("status", "200")))] == 1
    assert samples[("sentiment_requests_total", (("route", "/v1/predict"), ("status", "400")))] == 1
    assert samples[("sentiment_requests_total", (("route", "/predict"), ("status", "200")))] == 1
    assert samples[("sentiment_request_seconds_count", ())] == 3
    rounds = samples[("sentiment_round_texts_count", ())]
    assert 2 <= rounds <= 3  # the warm-up round, then the six texts in one round or two
    assert samples[("sentiment_round_texts_sum", ())] == 1 + len(TEXTS) + 1
    assert samples[("sentiment_call_rows_sum", ())] == 1 + len(TEXTS) + 1  # every text once, in calls of serve.batch_size
    assert samples[("sentiment_call_rows_count", ())] >= 1 + 3  # the warm-up, and five texts in calls of two or fewer
    assert samples[("sentiment_queued_texts", ())] == 0


def test_the_bearer_token_guards_the_predict_routes_and_model_but_not_health(served):
    requests = [
        post(["a good film"]),
        ("POST", "/predict", b'{"inputs": "a good film"}'),
        ("GET", "/v1/model", None),
        ("GET", "/healthz", None),
        ("GET", "/readyz", None),
    ]
    responses = asyncio.run(calls(app_for(token="s3cret"), requests))
    assert [r.status_code for r in responses] == [401, 401, 401, 200, 200]
    assert responses[0].headers["www-authenticate"] == "Bearer" and "bearer token" in responses[0].json()["error"]

    def status_with(value: str) -> int:
        [response] = asyncio.run(calls(app_for(token="s3cret"), [post(["a good film"])], headers={"Authorization": value}))
        return response.status_code

    for wrong in ("Bearer wrong", "Basic s3cret", "Bearer", "s3cret", "Bearers3cret"):
        assert status_with(wrong) == 401, wrong
    for right in ("Bearer s3cret", "bearer s3cret", "BEARER s3cret", "Bearer  s3cret"):  # the scheme is case-insensitive
        assert status_with(right) == 200, right


def test_every_bad_input_is_a_one_line_4xx_and_the_server_goes_on(served):
    bad = {
        ("POST", "/v1/predict", b"{not json"): 400,
        ("POST", "/v1/predict", b'{"texts": "one string"}'): 422,
        ("POST", "/v1/predict", b'{"texts": []}'): 422,
        ("POST", "/v1/predict", b'{"texts": ["fine", 3]}'): 422,
        ("POST", "/v1/predict", b'["no", "object"]'): 422,
        ("POST", "/v1/predict", b'{"texts": ["bad \xff bytes"]}'): 400,
        post(["x"] * 11): 413,
        post(["x" * 101]): 413,
        ("POST", "/v1/predict", b'{"texts": ["' + b"y" * 600 + b'"]}'): 413,
        ("POST", "/v1/predict", b'{"texts": ["fine"], "n": ' + b"9" * 4301 + b"}"): 400,  # json.loads: ValueError
        ("POST", "/predict", b'{"inputs": ' + b"1" * 5000 + b"}"): 400,
        ("POST", "/predict", b'{"texts": ["fine"]}'): 422,
        ("POST", "/predict", b'{"inputs": 3}'): 422,
        ("POST", "/predict", b'{"inputs": []}'): 422,
        ("POST", "/predict", b'{"inputs": [["one", "pair"]]}'): 422,
        ("POST", "/predict", b'{"inputs": ["one", "pair"]}'): 422,
        ("POST", "/predict", b'{"inputs": ["a", "flat", "list"]}'): 422,
        ("POST", "/predict", b'{"inputs": "fine", "raw_scores": 1}'): 422,
        ("POST", "/predict", b'{"inputs": "fine", "truncate": "yes"}'): 422,
        ("POST", "/predict", b'{"inputs": "fine", "parameters": {"top_k": 0}}'): 422,
        ("POST", "/predict", b'{"inputs": "fine", "parameters": {"function_to_apply": "sigmoid"}}'): 422,
        ("POST", "/predict", b'{"inputs": "fine", "stream": true}'): 422,
        ("POST", "/predict", b'{"inputs": [["x"], ["' + b"x" * 101 + b'"]]}'): 413,
        ("GET", "/v1/predict", None): 405,
        ("GET", "/predict", None): 405,
        ("GET", "/nowhere", None): 404,
    }
    limits = {"max_texts": 10, "max_chars": 100, "max_body_bytes": 6000}
    responses = asyncio.run(calls(app_for(**limits), [*bad, post(["a good film"])]))
    for (request, status), response in zip(bad.items(), responses[:-1], strict=True):
        assert response.status_code == status, (request, response.status_code, response.text)
        message = response.json()["error"]
        assert message and "\n" not in message, request
    assert "JSON integer of 4301 digits" in responses[9].json()["error"]
    assert responses[-1].status_code == 200
    assert_the_models_answer(responses[-1].json()["predictions"][0], "a good film")


def test_a_body_over_the_limit_is_refused_while_it_is_read_chunked_or_not(served):
    """A chunked body (no Content-Length) is read only until it passes serve.max_body_bytes; a declared
    Content-Length past the limit is refused before any byte is read."""
    pulled = []

    async def chunks():
        for i in range(1000):  # 300 kB, of which the server needs 4 chunks to know
            pulled.append(i)
            yield b'{"texts": ["' if i == 0 else b"x" * 300

    async def go():
        app = app_for(max_body_bytes=1000)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                await until_ready(client)
                request = client.build_request("POST", "/v1/predict", content=chunks())
                assert "content-length" not in request.headers and request.headers["transfer-encoding"] == "chunked"
                chunked = await client.send(request)
                declared = await client.post("/v1/predict", content=b"x" * 2000)
                after = await client.post("/v1/predict", json={"texts": ["a good film"]})
                return chunked, declared, after

    chunked, declared, after = asyncio.run(go())
    assert chunked.status_code == 413 and chunked.json() == {
        "error": "request body is over 1000 bytes, the limit (serve.max_body_bytes)"
    }
    assert chunked.headers["connection"] == "close"
    assert len(pulled) <= 6, f"the server read {len(pulled)} chunks of a body it refuses after 4"
    assert declared.status_code == 413 and "request body is 2000 bytes; the limit is 1000" in declared.json()["error"]
    assert after.status_code == 200


def test_a_chunked_body_over_the_limit_is_a_413_before_it_ends_on_a_real_server(served):
    """Over a socket to uvicorn: the 413 comes while the client has not finished its chunked body."""
    cfg = serve_config(max_body_bytes=1000)
    with real_server(app_for(max_body_bytes=1000), cfg) as url:
        wait_ready(url)
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(5):
                conn.sendall(b"12c\r\n" + b"x" * 300 + b"\r\n")  # 1,500 bytes; the terminating chunk never comes
            answer = b""
            while chunk := conn.recv(65536):  # the server answers, then closes the connection
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert b"serve.max_body_bytes" in answer
        pulled = []

        def big():  # 20 MB in chunks, no Content-Length: the server closes the connection after its 413
            for i in range(2000):
                pulled.append(i)
                yield b"x" * 10_000

        refused = httpx.post(f"{url}/v1/predict", content=big())
        assert refused.status_code == 413 and "serve.max_body_bytes" in refused.json()["error"]
        assert len(pulled) < 2000, "the client sent the whole body: the server read it all"
        with httpx.stream("POST", f"{url}/v1/predict", content=iter([b'{"texts": ', b'["a good film"]}'])) as ok:
            assert ok.status_code == 200  # a chunked body within the limit is read whole


def test_a_model_error_is_a_counted_one_line_503_and_the_server_goes_on(served, caplog):
    """Only the request the model fails on gets the error (a failed round is run again request by request)."""
    cfg = serve_config()
    scorer = scorer_for(cfg)
    run, [explode] = scorer.run, scorer.tokenizer("explode", add_special_tokens=False)["input_ids"]

    def failing(input_ids, attention_mask):  # the backend fails on any batch holding the word
        if (input_ids == explode).any():
            raise RuntimeError("the model exploded\non two lines")
        return run(input_ids, attention_mask)

    scorer.run = failing

    async def go():
        app = app_for(scorer=scorer)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                await until_ready(client)
                together = await asyncio.gather(*(client.post("/v1/predict", json={"texts": [t]}) for t in [*TEXTS, "explode"]))
                tei = await client.post("/predict", json={"inputs": "explode"})
                after = await client.post("/v1/predict", json={"texts": TEXTS})
                return together, tei, after, (await client.get("/metrics")).text

    together, tei, after, exposition = asyncio.run(go())
    assert [r.status_code for r in together] == [200] * len(TEXTS) + [503]
    assert together[-1].headers["retry-after"] == "1"
    assert together[-1].json() == {"error": "the model failed on this request (RuntimeError: the model exploded on two lines)"}
    assert tei.status_code == 503 and "the model exploded" in tei.json()["error"]
    assert after.status_code == 200 and len(after.json()["predictions"]) == len(TEXTS)
    samples = metric_samples(exposition)
    assert samples[("sentiment_requests_total", (("route", "/v1/predict"), ("status", "503")))] == 1
    assert samples[("sentiment_requests_total", (("route", "/predict"), ("status", "503")))] == 1
    assert samples[("sentiment_requests_total", (("route", "/v1/predict"), ("status", "200")))] == len(TEXTS) + 1
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"
    assert any("the model exploded on two lines" in r.getMessage() for r in caplog.records)


def test_readyz_says_loading_until_the_warm_up_call_has_answered(served):
    """The port opens before the warm-up call ends: /readyz is 503 loading meanwhile, /healthz 200."""
    cfg = serve_config()
    scorer = scorer_for(cfg)
    run, release = scorer.run, threading.Event()

    def slow_first_call(input_ids, attention_mask):
        assert release.wait(60), "the test never released the warm-up"
        return run(input_ids, attention_mask)

    scorer.run = slow_first_call
    try:
        with real_server(app_for(scorer=scorer), cfg) as url:
            loading = httpx.get(f"{url}/readyz")
            assert loading.status_code == 503 and loading.json() == {"status": "loading"}
            assert loading.headers["retry-after"] == "1"
            assert httpx.get(f"{url}/healthz").status_code == 200
            release.set()
            wait_ready(url)
            assert httpx.get(f"{url}/readyz").json() == {"status": "ready"}
    finally:
        release.set()


def test_connections_past_serve_max_connections_get_a_503(served):
    cfg = serve_config(max_connections=2)
    with real_server(app_for(max_connections=2), cfg) as url:
        wait_ready(url)
        port = int(url.rsplit(":", 1)[1])
        idle = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(2)]
        try:
            time.sleep(0.2)  # the server has accepted both
            assert httpx.get(f"{url}/healthz").status_code == 503
        finally:
            idle.pop().close()
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/healthz").status_code != 200:  # one connection fewer: room again
            assert time.monotonic() < deadline
            time.sleep(0.05)
        idle.pop().close()


def test_a_client_gone_mid_body_is_counted_quietly(served, caplog):
    cfg = serve_config()
    with real_server(app_for(), cfg) as url:
        wait_ready(url)
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b'{"texts": ["a go')
            time.sleep(0.2)
        deadline, gone = time.monotonic() + 30, ("sentiment_requests_total", (("route", "/v1/predict"), ("status", "499")))
        while metric_samples(httpx.get(f"{url}/metrics").text).get(gone) != 1:
            assert time.monotonic() < deadline, "the disconnect was never counted"
            time.sleep(0.05)
        assert httpx.post(f"{url}/v1/predict", json={"texts": ["a good film"]}).status_code == 200
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= 40], [r.getMessage() for r in caplog.records]


def test_the_tei_route_answers_huggingface_hubs_inference_client(served, monkeypatch):
    """huggingface_hub's InferenceClient, unchanged, against a real server: `text_classification` gets every
    label with its probability, highest first; TEI's own request forms get TEI's answers."""
    import huggingface_hub
    from huggingface_hub import InferenceClient

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # it refuses every URL while offline
    monkeypatch.delenv("HF_TOKEN", raising=False)
    cfg = serve_config()
    with real_server(app_for(), cfg) as url:
        wait_ready(url)

        def v1(texts):
            return httpx.post(f"{url}/v1/predict", json={"texts": texts}).json()["predictions"]

        def by_score(answer):
            return sorted(answer["probabilities"].items(), key=lambda kv: -kv[1])

        alone = [by_score(v1([t])[0]) for t in TEXTS]  # scored alone, as the client's one text is
        client = InferenceClient(model=f"{url}/predict")
        for text, expected in zip(TEXTS, alone, strict=True):
            got = client.text_classification(text)
            assert [(o.label, o.score) for o in got] == expected
        [top] = client.text_classification(TEXTS[0], top_k=1)
        assert (top.label, top.score) == alone[0][0]

        def tei(body):
            response = httpx.post(f"{url}/predict", json=body)
            assert response.status_code == 200, response.text
            return response.json()

        single = tei({"inputs": TEXTS[0], "truncate": True, "raw_scores": False})
        assert [(p["label"], p["score"]) for p in single] == alone[0]  # TEI: a single text's list alone
        raw = tei({"inputs": TEXTS[0], "raw_scores": True})  # the logits, whose scaled softmax is the probabilities
        assert [p["label"] for p in raw] == [label for label, _ in alone[0]]
        scaled = np.array([p["score"] for p in raw]) / scorer_for(cfg).temperature
        softmax = np.exp(scaled - scaled.max()) / np.exp(scaled - scaled.max()).sum()
        assert softmax == pytest.approx([score for _, score in alone[0]], abs=1e-6)
        assert [p["score"] for p in raw] != [p["score"] for p in single]
        together = [by_score(a) for a in v1(TEXTS)]
        batch = tei({"inputs": [[t] for t in TEXTS], "truncate": False})  # TEI's batch: a list per text
        assert [[(p["label"], p["score"]) for p in one] for one in batch] == together


def test_model_info_describes_the_served_model_from_its_head_json_alone(served):
    """/v1/model is built from the loaded model's head.json (what it lacks is left out), the form and why; no
    dvc.lock, results or card is read (here they say something else, and are not in the answer)."""
    head = served / "data" / "toy" / "finetune" / "model" / "head.json"
    (served / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    (served / "reports" / "toy").mkdir(parents=True)
    (served / "reports" / "toy" / "model_card.json").write_text('{"metrics": {"test": {"accuracy": 0.01}}}')
    health, ready, info = asyncio.run(
        calls(app_for(), [("GET", "/healthz", None), ("GET", "/readyz", None), ("GET", "/v1/model", None)])
    )
    assert health.json() == {"status": "ok"} and ready.json() == {"status": "ready"}
    meta = json.loads(head.read_text())  # the tiny model's, as its training stage writes it
    described = {"dataset": "toy", "labels": ["negative", "positive"], "encoder": "scratch", "max_length": 16}
    served_as = {"form": "torch", "form_reason": "asked for"}
    assert info.json() == {**described, **{key: meta[key] for key in ("model", "temperature", "test", "digest")}, **served_as}
    # what a head.json lacks is left out, never filled in (no temperature silently 1.0, no other model's figures)
    head.write_text(json.dumps({k: v for k, v in meta.items() if k not in ("model", "test")}))
    [info] = asyncio.run(calls(app_for(), [("GET", "/v1/model", None)]))
    assert "model" not in info.json() and "test" not in info.json() and info.json()["temperature"] == meta["temperature"]
    student = {"model": "distill", "temperature": 1.5, "test": {"accuracy": 0.75, "f1_macro": 0.5}, "digest": "0123abcd"}
    head.write_text(json.dumps({**meta, **student}))
    [info] = asyncio.run(calls(app_for(), [("GET", "/v1/model", None)]))
    assert info.json() == {**described, **student, **served_as}


def test_tei_shapes_mean_what_they_mean_in_tei(served):
    """A string, or a list of one string, is one text (answered with its list alone); a list of one-string lists
    is a batch (a list per text); a flat pair of strings is a text pair, refused with a 422 saying this model scores
    single texts, as is a pair inside a batch; three or more flat strings, or a batch with a bare string, are 422."""
    scorer, (A, B) = scorer_for(serve_config()), TEXTS[:2]
    requests = {
        "string": {"inputs": A},
        "one in a list": {"inputs": [A]},
        "batch": {"inputs": [[A], [B]]},
        "pair": {"inputs": [A, B]},
        "three flat": {"inputs": ["a", "b", "c"]},
        "pair in a batch": {"inputs": [[A], ["a", "b"]]},
        "empty item": {"inputs": [[A], []]},
        "bare string in a batch": {"inputs": [[A], "b"]},
        "number first": {"inputs": [3]},
    }
    bodies = [("POST", "/predict", json.dumps(body).encode()) for body in requests.values()]
    answers = asyncio.run(calls(app_for(scorer=scorer), bodies))
    got = dict(zip(requests, answers, strict=True))
    alone = {t: sorted(scorer.answers([t])[0]["probabilities"].items(), key=lambda kv: -kv[1]) for t in (A, B)}

    def pairs(one):
        return [(p["label"], pytest.approx(p["score"], abs=1e-6)) for p in one]

    assert got["string"].status_code == got["one in a list"].status_code == got["batch"].status_code == 200
    assert pairs(got["string"].json()) == alone[A] and pairs(got["one in a list"].json()) == alone[A]
    assert [pairs(one) for one in got["batch"].json()] == [alone[A], alone[B]]
    assert got["pair"].status_code == 422
    assert "text pair [text, text]: this model scores single texts" in got["pair"].json()["error"]
    assert got["pair in a batch"].json()["error"].startswith("inputs[1] is a text pair [text, text]: this model scores single")
    assert got["three flat"].status_code == 422 and "flat list of 3 items" in got["three flat"].json()["error"]
    for name in ("pair in a batch", "empty item", "bare string in a batch", "number first"):
        assert got[name].status_code == 422, (name, got[name].text)


def test_a_content_length_of_any_size_or_spelling_is_a_4xx(served):
    """The declared Content-Length is checked as text before it is converted: a 5,000-digit one is a 413, one that
    is not a number of bytes (a sign, a non-ASCII digit) a 400; never a 500 (raw ASGI: no client library rewrites it)."""
    app = app_for(max_body_bytes=1000)

    async def send(length: bytes) -> tuple[int, dict]:
        sent, body = [], b'{"texts": ["a good film"]}'
        messages = iter([{"type": "http.request", "body": body, "more_body": False}])

        async def receive():
            return next(messages, {"type": "http.disconnect"})

        async def record(message):
            sent.append(message)

        headers = [(b"host", b"test"), (b"content-type", b"application/json"), (b"content-length", length)]
        scope = {"type": "http", "method": "POST", "path": "/v1/predict", "raw_path": b"/v1/predict", "headers": headers}
        await app({**scope, "query_string": b"", "http_version": "1.1", "scheme": "http", "root_path": ""}, receive, record)
        status = next(m["status"] for m in sent if m["type"] == "http.response.start")
        return status, json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))

    async def go():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                await until_ready(client)
            return [await send(length) for length in (b"9" * 5000, b"-1", "\u0663".encode(), b"12x", b"26")]

    (huge, huge_body), (sign, _), (arabic, _), (letters, _), (right, answer) = asyncio.run(go())
    assert huge == 413 and "Content-Length of 5000 digits" in huge_body["error"]
    assert (sign, arabic, letters) == (400, 400, 400)
    assert right == 200
    assert_the_models_answer(answer["predictions"][0], "a good film")


def test_the_server_leaves_the_scorer_as_it_is(served):
    """Serving reads the shared scorer; it does not replace its methods or backend."""
    scorer = scorer_for(serve_config())
    before = dict(vars(scorer))
    request = ("POST", "/predict", b'{"inputs": "a good film", "raw_scores": true}')
    [response] = asyncio.run(calls(app_for(scorer=scorer), [request]))
    assert response.status_code == 200
    assert vars(scorer).keys() == before.keys() and all(vars(scorer)[k] is v for k, v in before.items())


def test_an_exception_outside_the_predict_routes_is_a_counted_one_line_500(served, caplog):
    """A route that raises (here /v1/model, whose info JSON cannot encode) answers a one-line JSON 500,
    is logged on one line without a traceback and counted, and the server goes on."""
    cfg = serve_config()
    scorer = scorer_for(cfg)
    app = create_app(scorer, cfg, {"dataset": "toy", "broken": object()})

    async def go():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                await until_ready(client)
                info = await client.get("/v1/model")
                after = await client.post("/v1/predict", json={"texts": ["a good film"]})
                return info, after, await client.get("/metrics")

    info, after, exposition = asyncio.run(go())
    assert info.status_code == 500 and info.json()["error"].startswith("internal error (TypeError: ")
    assert "\n" not in info.json()["error"]
    assert after.status_code == 200
    assert metric_samples(exposition.text)[("sentiment_unhandled_errors_total", (("path", "/v1/model"),))] == 1
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"
    assert any("GET /v1/model failed: TypeError" in r.getMessage() for r in caplog.records)


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


def test_every_malformed_body_of_the_corpus_is_a_one_line_4xx_never_a_500(served):
    """tests/malformed/http: v1_* bodies to POST /v1/predict, tei_* to POST /predict, all at once with
    params.yaml's limits; each a one-line 4xx, nothing counted as a 500 or unhandled, and the server goes on."""
    corpus = sorted((REPO / "tests" / "malformed" / "http").iterdir())
    requests = [("POST", "/v1/predict" if p.name.startswith("v1_") else "/predict", p.read_bytes()) for p in corpus]

    async def go():
        app = app_for()
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                await until_ready(client)
                answers = await asyncio.gather(*(client.request(m, url, content=body) for m, url, body in requests))
                after = await client.post("/v1/predict", json={"texts": ["a good film"]})
                return answers, after, (await client.get("/metrics")).text

    answers, after, exposition = asyncio.run(go())
    for path, response in zip(corpus, answers, strict=True):
        assert 400 <= response.status_code < 500, (path.name, response.status_code, response.text)
        assert "\n" not in response.json()["error"], path.name
    assert after.status_code == 200
    samples = metric_samples(exposition)
    assert not [k for k, v in samples.items() if v and (k[0] == "sentiment_unhandled_errors_total" or ("status", "500") in k[1])]
