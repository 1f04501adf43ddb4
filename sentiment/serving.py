"""The HTTP API behind `sentiment serve` (Starlette on uvicorn): dynamic micro-batching of concurrent
requests onto one `Predictor`.

Starlette rather than FastAPI: FastAPI's validation layer adds per-request time on the same route
(`python bench/asgi_overhead.py` measures both), and three routes whose JSON is checked by hand (so every
bad input gets a one-line 4xx, not a validation tree) do not need it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, PositiveInt

from sentiment.config import Section, load_params, section
from sentiment.forms import Form
from sentiment.inputs import lone_surrogate
from sentiment.paths import data_dir, report_dir
from sentiment.predictor import Predictor


class ServeConfig(Section):
    """params.yaml `serve`."""

    max_batch: PositiveInt = 64  # texts per model call
    max_wait_ms: float = Field(5.0, ge=0)  # how long the first request of a batch waits for company
    max_texts: PositiveInt = 256  # per request
    max_chars: PositiveInt = 20_000  # per text
    max_body_bytes: PositiveInt = 1_000_000


class MicroBatcher:
    """Gathers concurrent requests into batches of up to `max_batch` texts, waiting at most `max_wait_ms`
    after the first, and runs each batch on one worker thread (the model call releases the GIL)."""

    def __init__(self, predict: Callable[[list[str]], list[Any]], max_batch: int, max_wait_ms: float):
        self.predict, self.max_batch, self.max_wait = predict, max_batch, max_wait_ms / 1000
        self.queue: asyncio.Queue = asyncio.Queue()
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="model")
        self.task: asyncio.Task | None = None

    async def submit(self, texts: list[str]) -> list[Any]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((texts, future))
        return await future

    async def loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            count, deadline = len(items[0][0]), loop.time() + self.max_wait
            while count < self.max_batch and (left := deadline - loop.time()) > 0:
                try:
                    items.append(await asyncio.wait_for(self.queue.get(), left))
                except TimeoutError:
                    break
                count += len(items[-1][0])
            texts = [t for batch, _ in items for t in batch]
            try:
                results = await loop.run_in_executor(self.worker, self.predict, texts)
            except Exception as err:  # the model failed: every waiting request gets the error, the loop goes on
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


def create_app(predictor: Predictor, cfg: ServeConfig, info: dict[str, Any]):
    """The ASGI app: POST /v1/predict, GET /healthz, GET /v1/model."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    batcher = MicroBatcher(predictor.answers, cfg.max_batch, cfg.max_wait_ms)

    async def predict(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cfg.max_body_bytes:
            limit = f"the limit is {cfg.max_body_bytes} (serve.max_body_bytes)"
            return JSONResponse({"error": f"request body is {declared} bytes; {limit}"}, status_code=413)
        try:
            texts = parse_request(await request.body(), cfg)
        except BadRequest as err:
            return JSONResponse({"error": str(err)}, status_code=err.status)
        return JSONResponse({"predictions": await batcher.submit(texts)})

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def model(_: Request) -> JSONResponse:
        return JSONResponse(info)

    @asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        yield
        await batcher.stop()

    routes = [Route("/v1/predict", predict, methods=["POST"]), Route("/healthz", healthz), Route("/v1/model", model)]
    return Starlette(routes=routes, lifespan=lifespan)


def serve(key: str, form: Form, host: str, port: int) -> None:
    """Load the model, then serve until SIGTERM/SIGINT (uvicorn lets in-flight requests finish first)."""
    import uvicorn

    cfg = section(ServeConfig, load_params(), "serve")
    predictor = Predictor(key, form, cfg.max_batch)
    app = create_app(predictor, cfg, model_info(key, predictor))
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=30)
