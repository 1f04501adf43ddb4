"""The HTTP API behind `sentiment serve` (Starlette on uvicorn): continuous batching of concurrent
requests onto one fine-tuned-model scorer, a bounded queue, bodies bounded while they are read, a cap on
connections, Prometheus metrics and an optional bearer token.

Two predict routes share the batcher: `POST /v1/predict` (`{"texts": [...]}` -> label, label_id and
probabilities per text) and `POST /predict`, the classification route of Hugging Face
text-embeddings-inference (TEI), so clients written for TEI or the HF Inference API (huggingface_hub's
`InferenceClient.text_classification`) call this server unchanged.

Starlette rather than FastAPI: FastAPI's validation layer adds per-request time on the same route
(`python bench/asgi_overhead.py` measures both), and routes whose JSON is checked by hand (so every bad
input gets a one-line 4xx, not a validation tree) do not need it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing, asynccontextmanager
from typing import Any, NamedTuple

from pydantic import PositiveInt

from sentiment.config import Params, Section, UserError
from sentiment.data.text import CleanConfig, clean_text
from sentiment.metrics import scale
from sentiment.models.engine import score_logits
from sentiment.serving.forms import Form
from sentiment.serving.inputs import lone_surrogate
from sentiment.serving.long_text import PredictConfig
from sentiment.serving.runtime import FinetuneScorer

log = logging.getLogger("uvicorn.error")  # the server's own lines go where uvicorn's do


class ServeConfig(Section):
    """params.yaml `serve`."""

    max_batch: PositiveInt  # texts gathered per model round (what arrived while the model was busy)
    batch_size: PositiveInt  # texts per model call: a round's texts sorted by length, so little padding
    max_queue: PositiveInt  # texts waiting for the model; past it a request gets 503 and Retry-After
    max_texts: PositiveInt  # per request
    max_chars: PositiveInt  # per text
    max_body_bytes: PositiveInt  # per request body, counted while it is read (chunked or not)
    max_connections: PositiveInt  # open connections; past it uvicorn answers 503
    token_env: str  # when this environment variable is set, requests need `Authorization: Bearer <it>`


class QueueFull(Exception):
    pass


class ModelFailed(Exception):
    """The model raised on a request's texts (the message names the original exception)."""


def one_line(err: BaseException) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())


class ContinuousBatcher:
    """Runs the model on everything that has arrived, at once: an idle model takes a lone request
    straight away, and requests that arrive while it is busy are gathered into the next round (up to
    `max_batch` texts). One worker thread runs the model (the model call releases the GIL); at most
    `max_queue` texts wait, and a request past that raises QueueFull. When a round of several requests
    fails, each is run again alone, so only the request the model fails on gets ModelFailed."""

    def __init__(self, predict: Callable[[list[str]], list[Any]], max_batch: int, max_queue: int, observe=None):
        self.predict, self.max_batch, self.max_queue = predict, max_batch, max_queue
        self.observe = observe or (lambda texts: None)  # called with each round's size
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

    async def run_round(self, items: list[tuple[list[str], asyncio.Future]]) -> None:
        texts = [t for batch, _ in items for t in batch]
        self.observe(len(texts))
        try:
            results = await asyncio.get_running_loop().run_in_executor(self.worker, self.predict, texts)
        except Exception as err:
            if len(items) > 1:  # which request did the model fail on: each alone
                for item in items:
                    await self.run_round([item])
                return
            failed = ModelFailed(one_line(err))
            log.error("the model failed on a request: %s", failed)
            if not items[0][1].done():
                items[0][1].set_exception(failed)
            return
        start = 0
        for batch, future in items:
            if not future.done():
                future.set_result(results[start : start + len(batch)])
            start += len(batch)

    async def loop(self) -> None:
        while True:
            await self.arrived.wait()
            self.arrived.clear()
            while items := self.next_batch():
                await self.run_round(items)

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


def checked_texts(texts: list[Any], cfg: ServeConfig, name: str) -> list[str]:
    """`texts` when each is a string within serve.max_chars and valid Unicode, else BadRequest naming `name[i]`."""
    if not texts:
        raise BadRequest(422, f"{name} is empty: send at least one text")
    if len(texts) > cfg.max_texts:
        raise BadRequest(413, f"{len(texts)} texts in one request; the limit is {cfg.max_texts} (serve.max_texts)")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise BadRequest(422, f"{name}[{i}] is a {type(t).__name__}, expected a string")
        if len(t) > cfg.max_chars:
            raise BadRequest(413, f"{name}[{i}] has {len(t)} characters; the limit is {cfg.max_chars} (serve.max_chars)")
        if (at := lone_surrogate(t)) is not None:
            raise BadRequest(400, f"{name}[{i}] has a lone surrogate at character {at} (not valid Unicode)")
    return texts


def bounded_int(digits: str) -> int:
    """A JSON integer, refused past Python's integer-conversion limit with a 400 (not json's ValueError)."""
    limit = sys.get_int_max_str_digits()
    if limit and len(digits.lstrip("-")) > limit:
        raise BadRequest(400, f"request body has a JSON integer of {len(digits.lstrip('-'))} digits; the limit is {limit}")
    return int(digits)


def parse_json(body: bytes) -> Any:
    """The JSON value of a request body, or BadRequest with a 400 and a one-line reason."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadRequest(400, f"request body is not valid UTF-8 ({err.reason} at byte {err.start})") from None
    try:
        return json.loads(text, parse_int=bounded_int)
    except json.JSONDecodeError as err:
        raise BadRequest(400, f"request body is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    except RecursionError:
        raise BadRequest(400, "request body is JSON nested too deeply") from None
    except ValueError as err:  # any other refusal of the json module
        raise BadRequest(400, f"request body is not JSON this server can read ({one_line(err)})") from None


def parse_request(body: bytes, cfg: ServeConfig) -> list[str]:
    """The `texts` of a /v1/predict request, or BadRequest with a 4xx status and a one-line reason."""
    payload = parse_json(body)
    if not isinstance(payload, dict) or "texts" not in payload:
        raise BadRequest(422, 'expected a JSON object {"texts": ["...", ...]}')
    texts = payload["texts"]
    if not isinstance(texts, list):
        raise BadRequest(422, f"texts must be a list of strings, not {type(texts).__name__}")
    return checked_texts(texts, cfg, "texts")


TEI_FIELDS = ("inputs", "truncate", "raw_scores", "parameters", "options")
TEI_BATCH = '[["..."], ["..."]]'


class TeiRequest(NamedTuple):
    texts: list[str]
    nested: bool  # answer with a list per text, not a single text's list alone
    top_k: int | None  # labels per text, highest first (None: all)
    raw_scores: bool  # scores are the raw logits, not the temperature-scaled probabilities


def tei_texts(inputs: Any) -> tuple[list[Any], bool]:
    """(texts, is a batch) of TEI's `inputs`, read as text-embeddings-inference reads them: a string is one text,
    and so is a list of one string; a list of two strings is a text pair; a list of lists is a batch whose
    items are [text] or [text, text] pairs. Pairs, and any other shape, are a 422 BadRequest."""
    if isinstance(inputs, str):
        return [inputs], False
    if not isinstance(inputs, list):
        raise BadRequest(422, f"inputs must be a string or a batch {TEI_BATCH}, not {type(inputs).__name__}")
    if not inputs:
        raise BadRequest(422, f"inputs is empty: send a text, or a batch {TEI_BATCH}")
    if isinstance(inputs[0], str):  # TEI: one text, a pair, or (3 or more) an error
        if len(inputs) == 1:
            return inputs, False
        if len(inputs) == 2:
            raise BadRequest(422, f"inputs is a text pair [text, text]: this model scores single texts (a batch is {TEI_BATCH})")
        raise BadRequest(422, f"inputs is a flat list of {len(inputs)} items: send a text, or a batch {TEI_BATCH}")
    texts = []
    for i, item in enumerate(inputs):
        if not isinstance(item, list):
            raise BadRequest(422, f"inputs[{i}] is a {type(item).__name__}: each item of a batch is a list [text]")
        if len(item) == 2:
            raise BadRequest(422, f"inputs[{i}] is a text pair [text, text]: this model scores single texts")
        if len(item) != 1:
            raise BadRequest(422, f"inputs[{i}] is a list of {len(item)}: each item of a batch is a list [text]")
        texts.append(item[0])
    return texts, True


def parse_tei_request(body: bytes, cfg: ServeConfig) -> TeiRequest:
    """What a POST /predict body asks for, or BadRequest with a 4xx status and a one-line reason.

    TEI's form: `{"inputs": "text" | [["text"], ...], "truncate": bool, "raw_scores": bool}` (see tei_texts); the HF
    Inference API's: `{"inputs": "text", "parameters": {"top_k": int, "function_to_apply": "softmax"}}`.
    `nested`: a batch gets a list per text; a single text gets its list alone, as TEI answers it, or a list
    holding its list when the request has `parameters`, as the Inference API answers it (its clients,
    huggingface_hub's among them, read the first list).
    `raw_scores`: the logits (the mean over a long text's windows) instead of the probabilities, as TEI.
    Texts are read as params.yaml `predict.long_text` says, whatever `truncate` is."""
    payload = parse_json(body)
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise BadRequest(422, f'expected a JSON object {{"inputs": "..."}} or {{"inputs": {TEI_BATCH}}}')
    if unknown := sorted(set(payload) - set(TEI_FIELDS)):
        raise BadRequest(422, f"unknown field {unknown[0]!r}; the fields are {', '.join(TEI_FIELDS)}")
    for flag in ("truncate", "raw_scores"):
        if not isinstance(payload.get(flag, False), bool):
            raise BadRequest(422, f"{flag} must be true or false, not {payload[flag]!r}")
    parameters = payload.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest(422, f"parameters must be an object, not {type(parameters).__name__}")
    if unknown := sorted(set(parameters) - {"top_k", "function_to_apply"}):
        raise BadRequest(422, f"unknown parameter {unknown[0]!r}; the parameters are top_k, function_to_apply")
    top_k = parameters.get("top_k")
    if top_k is not None and (type(top_k) is not int or top_k < 1):
        raise BadRequest(422, f"parameters.top_k must be a whole number >= 1, not {top_k!r}")
    if parameters.get("function_to_apply", "softmax") != "softmax":
        raise BadRequest(422, f"parameters.function_to_apply {parameters['function_to_apply']!r} is not served: only softmax")
    texts, batch = tei_texts(payload["inputs"])
    nested = batch or "parameters" in payload
    return TeiRequest(checked_texts(texts, cfg, "inputs"), nested, top_k, payload.get("raw_scores", False))


def ranked(answer: dict[str, Any], top_k: int | None, raw_scores: bool = False) -> list[dict[str, Any]]:
    """TEI's predictions of one text: {label, score} by score, highest first (ties in label order); the
    scores are the probabilities, or with `raw_scores` the logits."""
    scores = sorted(answer["raw_scores" if raw_scores else "probabilities"].items(), key=lambda item: -item[1])
    return [{"label": label, "score": score} for label, score in scores[:top_k]]


CONTENT_LENGTH_DIGITS = 18  # a declared body size past this many digits is refused before it is converted


async def read_body(request, limit: int) -> bytes:
    """The request body, counted while it is read: a 413 BadRequest as soon as it passes `limit` bytes
    (a declared Content-Length past it, or of over CONTENT_LENGTH_DIGITS digits, is refused before any byte is
    read; one that is not a number of bytes is a 400)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        declared = declared.strip()
        if not (declared.isascii() and declared.isdigit()):
            raise BadRequest(400, f"Content-Length {declared[:40]!r} is not a number of bytes")
        if len(declared) > CONTENT_LENGTH_DIGITS:
            message = f"request body declares a Content-Length of {len(declared)} digits; the limit is {limit} bytes"
            raise BadRequest(413, f"{message} (serve.max_body_bytes)")
        if int(declared) > limit:
            raise BadRequest(413, f"request body is {declared} bytes; the limit is {limit} (serve.max_body_bytes)")
    body = bytearray()
    async with aclosing(request.stream()) as chunks:
        async for chunk in chunks:
            body += chunk
            if len(body) > limit:
                raise BadRequest(413, f"request body is over {limit} bytes, the limit (serve.max_body_bytes)")
    return bytes(body)


MODEL_FIELDS = {"model": "model", "base_model": "encoder", "max_length": "max_length", "temperature": "temperature"}


def model_info(key: str, scorer: FinetuneScorer) -> dict[str, Any]:
    """GET /v1/model: what the loaded model's head.json (`scorer.meta`) says of it (which model, its encoder,
    max_length, dev temperature, test accuracy and F1-macro, weights digest; what it does not say is left
    out), the dataset it serves and the form it runs in, with why."""
    meta = scorer.meta
    info = {"dataset": key, "labels": list(meta["labels"])}
    info |= {name: meta[field] for field, name in MODEL_FIELDS.items() if meta.get(field) is not None}
    test = meta.get("test")
    if isinstance(test, dict) and (figures := {k: test[k] for k in ("accuracy", "f1_macro") if test.get(k) is not None}):
        info["test"] = figures
    if meta.get("digest"):
        info["digest"] = meta["digest"]
    return info | {"form": scorer.form, "form_reason": scorer.form_reason}


class Metrics:
    """The server's Prometheus metrics (prometheus-client), in a registry of the app's own."""

    def __init__(self, queued: Callable[[], int]):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sentiment_requests",
            "Predict requests answered (POST /v1/predict, POST /predict), by route and status (499: the client went away)",
            ["route", "status"],
            registry=self.registry,
        )
        buckets = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
        seconds = "Seconds from a predict request's arrival to its answer"
        self.latency = Histogram("sentiment_request_seconds", seconds, buckets=buckets, registry=self.registry)
        sizes = (1, 2, 4, 8, 16, 32, 64, 128, 256)
        self.round = Histogram(
            "sentiment_round_texts",
            "Texts per model round: the requests gathered while the model was busy, run together",
            buckets=sizes,
            registry=self.registry,
        )
        self.call = Histogram(
            "sentiment_call_rows",
            "Rows per model call: a round's texts (a long text's windows) sorted by length, cut into serve.batch_size",
            buckets=sizes,
            registry=self.registry,
        )
        self.unhandled = Counter(
            "sentiment_unhandled_errors",
            "Exceptions outside the predict routes' own handling, answered with a one-line 500, by path",
            ["path"],
            registry=self.registry,
        )
        waiting = Gauge("sentiment_queued_texts", "Texts waiting for the model", registry=self.registry)
        waiting.set_function(queued)

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def model_answers(scorer: FinetuneScorer, observe_call: Callable[[int], None]) -> Callable[[list[str]], list[dict[str, Any]]]:
    """The server's predictor: one {label, label_id, probabilities, raw_scores} per text, in order, from one
    pass of the scorer's backend over its cleaned texts (sentiment.models.engine.score_logits, as the scorer
    reads them), each model call's rows reported to `observe_call`. The scorer itself is left as it is."""

    def run(input_ids, attention_mask):
        observe_call(len(input_ids))
        return scorer.run(input_ids, attention_mask)

    def answers(texts: list[str]) -> list[dict[str, Any]]:
        cleaned = [clean_text(t, scorer.cleaning) for t in texts]
        logits = score_logits(run, scorer.tokenizer, cleaned, scorer.max_length, scorer.batch_size, scorer.reading)
        return [
            {
                "label": scorer.labels[int(p.argmax())],
                "label_id": int(p.argmax()),
                "probabilities": dict(zip(scorer.labels, p.tolist(), strict=True)),
                "raw_scores": dict(zip(scorer.labels, row.tolist(), strict=True)),
            }
            for p, row in zip(scale(logits, scorer.temperature), logits, strict=True)
        ]

    return answers


def one_line_errors(app, metrics: Metrics):
    """ASGI middleware: an exception the app did not answer becomes a one-line JSON 500 (when no answer
    has started), logged on one line and counted, instead of Starlette's plain-text 500 and a traceback."""
    from starlette.responses import JSONResponse

    async def guarded(scope, receive, send) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        started = False

        async def sending(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await app(scope, receive, sending)
        except Exception as err:
            log.error("%s %s failed: %s", scope["method"], scope["path"], one_line(err))
            metrics.unhandled.labels(scope["path"]).inc()
            if not started:
                await JSONResponse({"error": f"internal error ({one_line(err)})"}, status_code=500)(scope, receive, send)

    return guarded


def create_app(scorer: FinetuneScorer, cfg: ServeConfig, info: dict[str, Any], token: str | None = None):
    """The ASGI app: POST /v1/predict, POST /predict (TEI), GET /v1/model (all three behind the bearer token
    when there is one), GET /healthz (the process is up), GET /readyz (the model has answered its warm-up
    call), GET /metrics (Prometheus). Every answer is JSON, an error a one-line {"error": ...}, an exception
    no route answered a counted 500 (one_line_errors)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    if token is not None and not token:
        raise UserError("the bearer token is empty")
    metrics = Metrics(lambda: batcher.queued)
    batcher = ContinuousBatcher(model_answers(scorer, metrics.call.observe), cfg.max_batch, cfg.max_queue, metrics.round.observe)
    readiness: dict[str, Any] = {"status": "loading"}

    def error(status: int, message: str, **headers: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers or None)

    def refused(request: Request) -> JSONResponse | None:
        if token is None:
            return None
        scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return None
        return error(401, "missing or wrong bearer token (Authorization: Bearer <token>)", **{"WWW-Authenticate": "Bearer"})

    async def scored(texts: list[str]) -> list[dict[str, Any]] | JSONResponse:
        try:
            return await batcher.submit(texts)
        except QueueFull as err:
            return error(503, str(err), **{"Retry-After": "1"})
        except ModelFailed as err:
            return error(503, f"the model failed on this request ({err})", **{"Retry-After": "1"})

    async def v1_predict(request: Request) -> Response:
        texts = parse_request(await read_body(request, cfg.max_body_bytes), cfg)
        answers = await scored(texts)
        if isinstance(answers, Response):
            return answers
        return JSONResponse({"predictions": [{k: v for k, v in a.items() if k != "raw_scores"} for a in answers]})

    async def tei_predict(request: Request) -> Response:
        asked = parse_tei_request(await read_body(request, cfg.max_body_bytes), cfg)
        answers = await scored(asked.texts)
        if isinstance(answers, Response):
            return answers
        predictions = [ranked(answer, asked.top_k, asked.raw_scores) for answer in answers]
        return JSONResponse(predictions if asked.nested else predictions[0])

    def predict_route(route: str, handle: Callable[[Request], Awaitable[Response]]):
        """`handle` behind the token, every exception answered as one line (a bad request's 4xx, a client
        gone 499, anything else a 500, logged on one line), each answer counted and timed."""

        async def endpoint(request: Request) -> Response:
            start = time.perf_counter()
            try:
                response = refused(request) or await handle(request)
            except BadRequest as err:
                headers = {"Connection": "close"} if err.status == 413 else {}  # the rest of the body is not read
                response = error(err.status, str(err), **headers)
            except ClientDisconnect:
                response = Response(status_code=499)  # nobody reads it: for the count
            except Exception as err:
                log.error("%s failed: %s", route, one_line(err))
                response = error(500, f"internal error ({one_line(err)})")
            metrics.requests.labels(route, str(response.status_code)).inc()
            metrics.latency.observe(time.perf_counter() - start)
            return response

        return endpoint

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> JSONResponse:
        if readiness["status"] == "ready":
            return JSONResponse(readiness)
        return JSONResponse(readiness, status_code=503, headers={"Retry-After": "1"})

    async def model(request: Request) -> JSONResponse:
        return refused(request) or JSONResponse(info)

    async def prometheus(_: Request) -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    async def warm_up() -> None:
        """The first model call builds kernels: /readyz says ready once it has answered."""
        try:
            await batcher.submit(["warm-up"])
        except Exception as err:
            readiness.update(status="failed", error=one_line(err))
            return
        readiness["status"] = "ready"

    @asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        warming = asyncio.get_running_loop().create_task(warm_up())  # not awaited: the port opens meanwhile
        yield
        warming.cancel()
        await batcher.stop()

    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    routes = [
        Route("/v1/predict", predict_route("/v1/predict", v1_predict), methods=["POST"]),
        Route("/predict", predict_route("/predict", tei_predict), methods=["POST"]),
        Route("/v1/model", model),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", prometheus),
    ]
    middleware = [Middleware(one_line_errors, metrics=metrics)]
    return Starlette(routes=routes, lifespan=lifespan, middleware=middleware, exception_handlers={HTTPException: http_error})


def bearer_token(env: str) -> str | None:
    """The token requests must carry (environment variable `env`), None when it is unset; set but empty,
    or with spaces no Authorization header can carry, it is a UserError rather than auth silently off."""
    value = os.environ.get(env)
    if value is None:
        return None
    if not value.strip():
        raise UserError(f"{env} is set but empty: set it to the token requests must carry, or unset it to serve without one")
    if value != value.strip():
        raise UserError(f"{env} starts or ends with whitespace, which no Authorization header can carry")
    return value


def load_scorer(key: str, form: Form, cfg: ServeConfig, params: Params, model: str | None = None) -> FinetuneScorer:
    """The dataset's trained model (`model`, default params.yaml predict.model) in `form`, reading text as
    params.yaml `clean` and `predict` say, in calls of serve.batch_size; idle onnxruntime threads sleep (the event
    loop needs the core)."""
    cleaning = params.section(CleanConfig, "clean").light()
    reading = params.section(PredictConfig, "predict")
    return FinetuneScorer(key, form, cleaning, reading, cfg.batch_size, spin=False, model=model or reading.model)


def uvicorn_config(app, cfg: ServeConfig, host: str, port: int, **options):
    """uvicorn's settings for the app: serve.max_connections open connections (uvicorn's limit_concurrency
    counts the one asking too, hence the +1), 30 s for in-flight requests at shutdown."""
    import uvicorn

    settings = {"log_level": "warning", "timeout_graceful_shutdown": 30, **options}
    return uvicorn.Config(app, host=host, port=port, limit_concurrency=cfg.max_connections + 1, **settings)


def serve(params: Params, key: str, form: Form, host: str, port: int, model: str | None = None) -> None:
    """Load the model, then serve until SIGTERM/SIGINT (uvicorn lets in-flight requests finish first)."""
    import uvicorn

    cfg = params.section(ServeConfig, "serve")
    token = bearer_token(cfg.token_env)
    scorer = load_scorer(key, form, cfg, params, model)
    print(
        f"serving {key}'s {scorer.model} model, form {scorer.form} ({scorer.form_reason}) on http://{host}:{port}",
        file=sys.stderr,
    )
    app = create_app(scorer, cfg, model_info(key, scorer), token)
    uvicorn.Server(uvicorn_config(app, cfg, host, port)).run()
