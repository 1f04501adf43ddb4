"""Serving a trained model: batch inference with one exported form, dynamic micro-batching, and the
HTTP API behind `sentiment serve` (Starlette on uvicorn).

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
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import Field, PositiveInt

from sentiment.config import Section, UserError, load_params, section
from sentiment.long_text import PredictConfig, mean_per_text, window_batches, windows
from sentiment.metrics import scale
from sentiment.paths import data_dir, metrics_file, model_dir, report_dir
from sentiment.text import CleanConfig, CleanParams, clean_text

Form = Literal["onnx-int8", "onnx", "torch"]
FORM_FILES = {"onnx-int8": "model_optimized_int8.onnx", "onnx": "model.onnx"}  # onnx-int8: the fastest exported form


class ServeConfig(Section):
    """params.yaml `serve`."""

    max_batch: PositiveInt = 64  # texts per model call
    max_wait_ms: float = Field(5.0, ge=0)  # how long the first request of a batch waits for company
    max_texts: PositiveInt = 256  # per request
    max_chars: PositiveInt = 20_000  # per text
    max_body_bytes: PositiveInt = 1_000_000


def trained_model(key: str) -> Path:
    path = model_dir(key)
    if not (path / "head.json").exists():
        raise UserError(f"no trained model for {key!r} at {path}: run `dvc repro finetune@{key}` first")
    return path


def temperature(key: str) -> float:
    """The temperature evaluate fitted on dev, or 1.0 when evaluate has not run."""
    path = metrics_file(key, "evaluate")
    if not path.exists():
        return 1.0
    return float(json.loads(path.read_text())["models"].get("finetune", {}).get("temperature", 1.0))


def clean_config() -> CleanConfig:
    """The pipeline's light cleaning (params.yaml `clean`), or the defaults outside a checkout."""
    try:
        return section(CleanParams, load_params(), "clean").light()
    except UserError:
        return CleanConfig()


def predict_config() -> PredictConfig:
    """params.yaml `predict` (long texts: truncate or windows), or its defaults outside a checkout."""
    try:
        return section(PredictConfig, load_params(), "predict")
    except UserError as err:
        if str(err).startswith("invalid param"):
            raise
        return PredictConfig()


class Predictor:
    """Texts -> temperature-scaled class probabilities with one form of a dataset's fine-tuned model,
    over length-sorted batches; the pipeline's cleaning, and long texts read as `predict` says
    (truncated to the model's max_length, or scored in overlapping windows)."""

    def __init__(self, key: str, form: Form = "torch", batch_size: int = 64, reading: PredictConfig | None = None):
        from transformers import AutoTokenizer

        from sentiment.export import onnx_backend, torch_backend
        from sentiment.models import load_classifier

        path = trained_model(key)
        self.meta = json.loads((path / "head.json").read_text())
        self.labels: list[str] = self.meta["labels"]
        self.form, self.batch_size = form, batch_size
        if form == "torch":
            model, self.tokenizer, _ = load_classifier(path)
            self.run = torch_backend(model)
        else:
            onnx = data_dir(key, "export") / FORM_FILES[form]
            if not onnx.exists():
                raise UserError(f"no exported model at {onnx}: run `dvc repro export@{key}` first")
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.run = onnx_backend(onnx)
        self.temperature = temperature(key)
        self.cleaning = clean_config()
        self.reading = reading or predict_config()

    def logits(self, texts: list[str]) -> np.ndarray:
        """Raw logits per text (the mean over its windows when `predict.long_text` is chunk)."""
        from sentiment.export import backend_logits

        if not texts:
            return np.zeros((0, len(self.labels)))
        cleaned = [clean_text(t, self.cleaning) for t in texts]
        ids, owner = windows(self.tokenizer, cleaned, self.meta["max_length"], self.reading)
        window_logits = backend_logits(self.run, window_batches(self.tokenizer, ids, self.batch_size), len(ids))
        return mean_per_text(window_logits, owner, len(texts))

    def probabilities(self, texts: list[str]) -> np.ndarray:
        return scale(self.logits(texts), self.temperature)

    def answers(self, texts: list[str]) -> list[dict[str, Any]]:
        """One {label, label_id, probabilities} per text, in order."""
        probs = self.probabilities(texts) if texts else np.zeros((0, len(self.labels)))
        return [
            {
                "label": self.labels[int(p.argmax())],
                "label_id": int(p.argmax()),
                "probabilities": dict(zip(self.labels, p.tolist(), strict=True)),
            }
            for p in probs
        ]


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
