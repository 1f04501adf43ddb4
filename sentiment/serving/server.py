"""The HTTP API behind `sentiment serve` (Starlette on uvicorn): continuous batching of concurrent
requests onto one `Predictor`, a bounded queue, Prometheus metrics and an optional bearer token.

Starlette rather than FastAPI: FastAPI's validation layer adds per-request time on the same route
(`python bench/asgi_overhead.py` measures both), and three routes whose JSON is checked by hand (so every
bad input gets a one-line 4xx, not a validation tree) do not need it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml
from pydantic import PositiveInt

from sentiment.config import Section, load_params, section
from sentiment.paths import data_dir, report_dir
from sentiment.serving.forms import Form
from sentiment.serving.inputs import lone_surrogate
from sentiment.serving.predictor import Predictor


class ServeConfig(Section):
    """params.yaml `serve`."""

    max_batch: PositiveInt = 64  # texts gathered per model round (what arrived while the model was busy)
    batch_size: PositiveInt = 8  # texts per model call: a round's texts sorted by length, so little padding
    max_queue: PositiveInt = 1024  # texts waiting for the model; past it a request gets 503 and Retry-After
    max_texts: PositiveInt = 256  # per request
    max_chars: PositiveInt = 20_000  # per text
    max_body_bytes: PositiveInt = 1_000_000
    token_env: str = "SENTIMENT_TOKEN"  # when this environment variable is set, requests need `Authorization: Bearer <it>`


class QueueFull(Exception):
    pass


class ContinuousBatcher:
    """Runs the model on everything that has arrived, at once: an idle model takes a lone request
    straight away, and requests that arrive while it is busy are gathered into the next batch (up to
    `max_batch` texts). One worker thread runs the model (the model call releases the GIL); at most
    `max_queue` texts wait, and a request past that raises QueueFull."""

    def __init__(self, predict: Callable[[list[str]], list[Any]], max_batch: int, max_queue: int, observe=None):
        self.predict, self.max_batch, self.max_queue = predict, max_batch, max_queue
        self.observe = observe or (lambda texts: None)  # called with each batch's size
        self.waiting: deque[tuple[list[str], asyncio.Future]] = deque()
        self.queued = 0  # texts in `waiting`
        self.arrived = asyncio.Event()
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="model")
        self.task: asyncio.Task | None = None

    async def submit(self, texts: list[str]) -> list[Any]:
        if self.queued + len(texts) > self.max_queue:
            raise QueueFull(f"{self.queued} texts are waiting; the limit is {self.max_queue} (serve.max_queue)")
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((texts, future))
        self.queued += len(texts)
        self.arrived.set()
        return await future

    def next_batch(self) -> list[tuple[list[str], asyncio.Future]]:
        """Requests from the front of the queue, up to max_batch texts (always at least one request)."""
        items, count = [], 0
        while self.waiting and (not items or count + len(self.waiting[0][0]) <= self.max_batch):
            texts, future = self.waiting.popleft()
            self.queued -= len(texts)
            count += len(texts)
            if not future.cancelled():  # the client went away while it waited
                items.append((texts, future))
        return items

    async def loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.arrived.wait()
            self.arrived.clear()
            while items := self.next_batch():
                texts = [t for batch, _ in items for t in batch]
                self.observe(len(texts))
                try:
                    results = await loop.run_in_executor(self.worker, self.predict, texts)
                except Exception as err:  # the model failed: every request of the batch gets the error, the loop goes on
                    for _, future in items:
                        if not future.done():
                            future.set_exception(err)
                    continue
                start = 0
                for batch, future in items:
                    if not future.done():
                        future.set_result(results[start : start + len(batch)])
                    start += len(batch)

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.loop())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
        self.worker.shutdown(wait=True)


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def parse_request(body: bytes, cfg: ServeConfig) -> list[str]:
    """The `texts` of a predict request, or BadRequest with a 4xx status and a one-line reason."""
    if len(body) > cfg.max_body_bytes:
        raise BadRequest(413, f"request body is {len(body)} bytes; the limit is {cfg.max_body_bytes} (serve.max_body_bytes)")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadRequest(400, f"request body is not valid UTF-8 ({err.reason} at byte {err.start})") from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as err:
        raise BadRequest(400, f"request body is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    except RecursionError:
        raise BadRequest(400, "request body is JSON nested too deeply") from None
    if not isinstance(payload, dict) or "texts" not in payload:
        raise BadRequest(422, 'expected a JSON object {"texts": ["...", ...]}')
    texts = payload["texts"]
    if not isinstance(texts, list):
        raise BadRequest(422, f"texts must be a list of strings, not {type(texts).__name__}")
    if not texts:
        raise BadRequest(422, "texts is empty: send at least one text")
    if len(texts) > cfg.max_texts:
        raise BadRequest(413, f"{len(texts)} texts in one request; the limit is {cfg.max_texts} (serve.max_texts)")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise BadRequest(422, f"texts[{i}] is a {type(t).__name__}, expected a string")
        if len(t) > cfg.max_chars:
            raise BadRequest(413, f"texts[{i}] has {len(t)} characters; the limit is {cfg.max_chars} (serve.max_chars)")
        if (at := lone_surrogate(t)) is not None:
            raise BadRequest(400, f"texts[{i}] has a lone surrogate at character {at} (not valid Unicode)")
    return texts


def model_version(key: str, lock: Path = Path("dvc.lock")) -> str | None:
    """The fine-tuned model's hash as dvc.lock records it (its DVC out `data/<key>/finetune`)."""
    if not lock.exists():
        return None
    stage = (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).get(f"finetune@{key}", {})
    wanted = data_dir(key, "finetune").as_posix()
    return next((out.get("md5") for out in stage.get("outs", []) if out.get("path") == wanted), None)


def model_info(key: str, predictor: Predictor) -> dict[str, Any]:
    card = report_dir(key) / "model_card.json"
    return {
        "dataset": key,
        "labels": predictor.labels,
        "encoder": predictor.meta.get("base_model"),
        "form": predictor.form,
        "max_length": predictor.meta["max_length"],
        "temperature": predictor.temperature,
        "test_metrics": json.loads(card.read_text())["metrics"]["test"] if card.exists() else None,
        "version": model_version(key),
    }


class Metrics:
    """The server's Prometheus metrics (prometheus-client), in a registry of the app's own."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("sentiment_requests", "Predict requests answered, by status", ["status"], registry=self.registry)
        buckets = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
        self.latency = Histogram("sentiment_request_seconds", "Predict request latency", buckets=buckets, registry=self.registry)
        sizes = (1, 2, 4, 8, 16, 32, 64, 128, 256)
        self.batch = Histogram("sentiment_batch_texts", "Texts per model call", buckets=sizes, registry=self.registry)

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def create_app(predictor: Predictor, cfg: ServeConfig, info: dict[str, Any], token: str | None = None):
    """The ASGI app: POST /v1/predict, GET /v1/model (both behind the bearer token when there is one),
    GET /healthz (the process is up), GET /readyz (the model has answered), GET /metrics (Prometheus)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    metrics = Metrics()
    batcher = ContinuousBatcher(predictor.answers, cfg.max_batch, cfg.max_queue, metrics.batch.observe)
    ready = asyncio.Event()

    def refused(request: Request) -> JSONResponse | None:
        if token is None:
            return None
        given = request.headers.get("authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return None
        message = "missing or wrong bearer token (Authorization: Bearer <token>)"
        return JSONResponse({"error": message}, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    async def answer(request: Request) -> JSONResponse:
        if (denied := refused(request)) is not None:
            return denied
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cfg.max_body_bytes:
            limit = f"the limit is {cfg.max_body_bytes} (serve.max_body_bytes)"
            return JSONResponse({"error": f"request body is {declared} bytes; {limit}"}, status_code=413)
        try:
            texts = parse_request(await request.body(), cfg)
        except BadRequest as err:
            return JSONResponse({"error": str(err)}, status_code=err.status)
        try:
            return JSONResponse({"predictions": await batcher.submit(texts)})
        except QueueFull as err:
            return JSONResponse({"error": str(err)}, status_code=503, headers={"Retry-After": "1"})

    async def predict(request: Request) -> JSONResponse:
        start = time.perf_counter()
        response = await answer(request)
        metrics.requests.labels(str(response.status_code)).inc()
        metrics.latency.observe(time.perf_counter() - start)
        return response

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> JSONResponse:
        if ready.is_set():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": "1"})

    async def model(request: Request) -> JSONResponse:
        return refused(request) or JSONResponse(info)

    async def prometheus(_: Request) -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        await batcher.submit(["warm-up"])  # the first model call builds kernels: answer /readyz after it
        ready.set()
        yield
        await batcher.stop()

    routes = [
        Route("/v1/predict", predict, methods=["POST"]),
        Route("/v1/model", model),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", prometheus),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def serve(key: str, form: Form, host: str, port: int) -> None:
    """Load the model, then serve until SIGTERM/SIGINT (uvicorn lets in-flight requests finish first)."""
    import uvicorn

    cfg = section(ServeConfig, load_params(), "serve")
    predictor = Predictor(key, form, cfg.batch_size, spin=False)  # idle ORT threads sleep: the event loop needs the core
    print(f"serving {key} with form {predictor.form} ({predictor.form_reason}) on http://{host}:{port}", file=sys.stderr)
    token = os.environ.get(cfg.token_env) or None
    app = create_app(predictor, cfg, model_info(key, predictor), token)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=30)
