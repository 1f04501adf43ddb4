"""Per-request overhead of the ASGI framework behind `sentiment serve`: Starlette (what it uses) against
FastAPI (Starlette plus pydantic request validation), on the same route with no model: parse
{"texts": [...]}, answer one label per text. Requests go through httpx's in-process ASGI transport,
so the figure is the framework's cost, not the network's. Needs `pip install fastapi`. Prints only.

    python bench/asgi_overhead.py [--requests 3000]
"""

import argparse
import asyncio
import json
import time

import httpx
from pydantic import BaseModel

JSON = {"content-type": "application/json"}
BODY = json.dumps({"texts": ["a fine film", "a dull one"]}).encode()


class PredictRequest(BaseModel):  # module level: FastAPI resolves the annotation by name
    texts: list[str]


def starlette_app():
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def predict(request: Request) -> JSONResponse:
        texts = json.loads(await request.body())["texts"]
        return JSONResponse({"predictions": [{"label": "positive"} for _ in texts]})

    return Starlette(routes=[Route("/v1/predict", predict, methods=["POST"])])


def fastapi_app():
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/v1/predict")
    async def predict(request: PredictRequest) -> dict:
        return {"predictions": [{"label": "positive"} for _ in request.texts]}

    return app


async def rate(app, requests: int) -> float:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        for _ in range(50):  # warm-up
            await client.post("/v1/predict", content=BODY, headers=JSON)
        start = time.perf_counter()
        for _ in range(requests):
            (await client.post("/v1/predict", content=BODY, headers=JSON)).raise_for_status()
        return requests / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    apps = {"starlette": starlette_app}
    try:
        import fastapi  # noqa: F401

        apps["fastapi"] = fastapi_app
    except ImportError:
        print("fastapi is not installed: `pip install fastapi` to compare")
    rates = {name: asyncio.run(rate(build(), args.requests)) for name, build in apps.items()}
    for name, r in rates.items():
        print(f"{name}: {r:.0f} requests/s, {1e6 / r:.0f} µs per request")
    if "fastapi" in rates:
        print(f"fastapi costs {1e6 / rates['fastapi'] - 1e6 / rates['starlette']:+.0f} µs per request over starlette")


if __name__ == "__main__":
    main()
