"""`sentiment` command: label, explain or serve with a dataset's fine-tuned model.

sentiment predict --dataset <key> --input reviews.csv --text-column review --output out.jsonl
echo "what a lovely film" | sentiment predict                # the first dataset of params.yaml
sentiment explain --dataset <key> "not bad at all"
sentiment serve --dataset <key> --form onnx_int8 --port 8000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sentiment.config import UserError, load_params, section
from sentiment.forms import Form
from sentiment.inputs import lone_surrogate
from sentiment.io import atomic_path
from sentiment.metrics import scale
from sentiment.predictor import clean_config, temperature, trained_model
from sentiment.stage import OneLineParser, fail
from sentiment.text import clean_text


def decode(raw: bytes, source: str) -> str:
    """UTF-8 text, or a one-line error naming the line with undecodable bytes."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise UserError(f"{source}: line {line} is not valid UTF-8 ({err.reason} at byte {err.start})") from None


def read_texts(source: str, fmt: str | None, text_column: str) -> list[str]:
    """Texts from a CSV (text column), JSONL (text field), or plain text (one per line); '-' is stdin."""
    if source == "-":
        raw, fmt = sys.stdin.buffer.read(), fmt or "txt"
    else:
        path = Path(source)
        if not path.exists():
            raise UserError(f"input file not found: {source}")
        raw, fmt = path.read_bytes(), fmt or {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}.get(path.suffix, "txt")
    text = decode(raw, "stdin" if source == "-" else source)
    if fmt == "txt":
        return text.splitlines()
    where = "stdin" if source == "-" else source
    frame = read_csv_text(text, where) if fmt == "csv" else read_jsonl_text(text, where)
    if text_column not in frame.columns:
        raise UserError(f"{where}: missing column {text_column!r} (has {list(frame.columns)}); set --text-column")
    return frame[text_column].fillna("").astype(str).tolist()


def read_jsonl_text(text: str, where: str) -> pd.DataFrame:
    """One JSON object per line (blank lines skipped); a malformed line is an error naming it."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{where}: line {number} is not valid JSON ({err.msg} at column {err.colno})") from None
        except RecursionError:
            raise UserError(f"{where}: line {number} is JSON nested too deeply") from None
        if not isinstance(row, dict):
            raise UserError(f"{where}: line {number} is a JSON {type(row).__name__}, expected an object with a text field")
        for field, value in row.items():
            if isinstance(value, str) and (at := lone_surrogate(value)) is not None:
                raise UserError(f"{where}: line {number}: {field!r} has a lone surrogate at character {at} (not valid Unicode)")
        rows.append(row)
    return pd.DataFrame(rows)


def read_csv_text(text: str, where: str) -> pd.DataFrame:
    """A CSV with a header; a malformed row is an error naming its line (pandas' parser reports it)."""
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise UserError(f"{where}: empty CSV (expected a header line)") from None
    except pd.errors.ParserError as err:
        reason = str(err).strip().splitlines()[-1].removeprefix("Error tokenizing data. C error: ")
        raise UserError(f"{where}: malformed CSV: {reason}") from None


@contextmanager
def no_loading_bar() -> Iterator[None]:
    """Hide transformers' "Loading weights" bar: a local checkpoint loads in under a second."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_model(dataset: str, **kwargs: Any) -> tuple[Any, Any, dict[str, Any]]:
    """(model, tokenizer, head metadata) of a dataset's fine-tuned model; kwargs go to load_classifier."""
    from sentiment.models import load_classifier

    with no_loading_bar():
        return load_classifier(trained_model(dataset), **kwargs)


def predict(
    dataset: str, texts: list[str], batch_size: int = 64, long_text: str | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Label texts (empty ones skipped); returns the table and counts of skipped and long rows.

    The same Predictor as `sentiment serve --form torch`, so the two give the same answers. Texts over
    the model's max_length are read as params.yaml `predict.long_text` says (or `long_text`).
    """
    from sentiment.predictor import Predictor, predict_config

    reading = predict_config()
    if long_text:
        reading = reading.model_copy(update={"long_text": long_text})
    with no_loading_bar():
        predictor = Predictor(dataset, "torch", batch_size, reading)
    cfg = clean_config()
    kept = [(t, clean_text(t, cfg)) for t in texts]
    kept = [(raw, clean) for raw, clean in kept if clean]
    counts = {"skipped_empty": len(texts) - len(kept), "long": 0, "long_text": reading.long_text}
    if not kept:
        return pd.DataFrame(columns=["text", "label", "label_id"]), counts
    lengths = [len(ids) for ids in predictor.tokenizer([c for _, c in kept], truncation=False, verbose=False)["input_ids"]]
    counts["long"] = int(sum(n > predictor.meta["max_length"] for n in lengths))
    probs = predictor.probabilities([raw for raw, _ in kept])
    names = predictor.labels
    out = pd.DataFrame({"text": [r for r, _ in kept], "label": [names[i] for i in probs.argmax(1)], "label_id": probs.argmax(1)})
    for i, name in enumerate(names):
        out[f"prob_{name}"] = np.round(probs[:, i], 6)
    return out, counts


def cmd_serve(args: argparse.Namespace) -> None:
    from sentiment.serving import serve

    serve(args.dataset or first_dataset(), args.form, args.host, args.port)


def write_output(frame: pd.DataFrame, target: str, fmt: str | None) -> None:
    fmt = fmt or ("jsonl" if target.endswith((".jsonl", ".json")) else "csv")
    text = frame.to_json(orient="records", lines=True, force_ascii=False) if fmt == "jsonl" else frame.to_csv(index=False)
    if target == "-":
        sys.stdout.write(text)
    else:
        with atomic_path(target) as tmp:
            tmp.write_text(text, encoding="utf-8")
            tmp.chmod(0o666 & ~current_umask())  # a temporary file is created 0600; the output is the user's usual mode


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def cmd_predict(args: argparse.Namespace) -> None:
    texts = read_texts(args.input, args.input_format, args.text_column)  # bad input is named before params are read
    args.dataset = args.dataset or first_dataset()
    frame, counts = predict(args.dataset, texts, args.batch_size, args.long_text)
    if counts["skipped_empty"]:
        print(f"skipped {counts['skipped_empty']} empty lines", file=sys.stderr)
    if counts["long"] and counts["long_text"] == "truncate":
        print(f"warning: {counts['long']} texts were longer than the model's max_length and were truncated", file=sys.stderr)
    elif counts["long"]:
        print(f"{counts['long']} texts longer than the model's max_length were scored in overlapping windows", file=sys.stderr)
    write_output(frame, args.output, args.output_format)


def attention_config(ig_steps: int | None):
    """params.yaml `attention` (IG baseline, steps, tolerance), or its defaults outside a checkout."""
    from sentiment.attribution import AttentionConfig

    try:
        cfg = section(AttentionConfig, load_params(), "attention")
    except UserError:
        cfg = AttentionConfig()
    return cfg.model_copy(update={"layers": [-1], **({"ig_steps": ig_steps} if ig_steps else {})})


def cmd_explain(args: argparse.Namespace) -> None:
    from sentiment.attribution import attention_heatmap, explain_example

    if args.file:
        if not Path(args.file).exists():
            raise UserError(f"input file not found: {args.file}")
        text = decode(Path(args.file).read_bytes(), args.file)
    elif args.text:
        text = args.text
    else:
        raise UserError("give a text or --file")
    text = clean_text(text.strip(), clean_config())
    if not text:
        raise UserError("the text is empty after cleaning")
    args.dataset = args.dataset or first_dataset()
    model, tokenizer, meta = load_model(args.dataset, need_attention_weights=True)
    result = explain_example(model, tokenizer, text, meta["max_length"], attention_config(args.ig_steps))
    names = meta["labels"]
    probs = scale(np.log(np.clip(result["probs"][None, :], 1e-12, 1)), temperature(args.dataset))[0]
    print(f"prediction: {names[int(probs.argmax())]}")
    print("probabilities: " + ", ".join(f"{n} {p:.3f}" for n, p in zip(names, probs, strict=True)))
    words = result["words"]
    for method, scores in result["scores"].items():
        top = np.argsort(-scores, kind="stable")[: args.top]
        print(f"{method}: " + ", ".join(f"{words[i]} ({scores[i]:+.3f})" for i in top))
    ig = result["ig"]
    gap = f"completeness gap {ig['relative_delta']:.1%} of the output change"
    print(f"integrated gradients: {ig['baseline']} baseline, {ig['steps']} steps, {gap}")
    attention_heatmap(Path(args.output), words, result["layers"], f"{args.dataset}: predicted {names[int(probs.argmax())]}")
    print(f"heatmap: {args.output}")


def parser() -> argparse.ArgumentParser:
    root = OneLineParser(prog="sentiment", description="Use the pipeline's fine-tuned sentiment models.")
    sub = root.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="label text from a CSV, JSONL, text file or stdin")
    p.add_argument("--dataset", help="whose fine-tuned model to use (a params.yaml datasets key; default: the first)")
    p.add_argument("--input", default="-", help="a .csv, .jsonl or text file (one text per line); '-' = stdin")
    p.add_argument("--input-format", choices=["csv", "jsonl", "txt"], help="override the format guessed from the suffix")
    p.add_argument("--text-column", default="text", help="the text column (CSV) or field (JSONL)")
    p.add_argument("--output", default="-", help="output file (.csv or .jsonl); '-' = stdout")
    p.add_argument("--output-format", choices=["csv", "jsonl"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--long-text", choices=["truncate", "chunk"], help="texts over max_length: default params.yaml predict.long_text"
    )
    p.set_defaults(func=cmd_predict)
    e = sub.add_parser("explain", help="prediction, top tokens per attribution method, and an attention heatmap")
    e.add_argument("text", nargs="?", help="the text to explain")
    e.add_argument("--file", help="read the text from this file instead")
    e.add_argument("--dataset", help="whose fine-tuned model to use (a params.yaml datasets key; default: the first)")
    e.add_argument("--top", type=int, default=5, help="tokens listed per method")
    e.add_argument("--ig-steps", type=int, help="first integrated-gradients step count (default: params.yaml attention.ig_steps)")
    e.add_argument("--output", default="explain.png", help="where to write the heatmap PNG")
    e.set_defaults(func=cmd_explain)
    s = sub.add_parser("serve", help="an HTTP API: POST /v1/predict, GET /healthz, GET /v1/model")
    s.add_argument("--dataset", help="whose fine-tuned model to serve (a params.yaml datasets key; default: the first)")
    s.add_argument("--form", choices=typing.get_args(Form), default="onnx_int8", help="which exported form answers")
    s.add_argument("--host", default="127.0.0.1", help="bind address (loopback by default)")
    s.add_argument("--port", type=int, default=8000)
    s.set_defaults(func=cmd_serve)
    return root


def first_dataset() -> str:
    """The first dataset of params.yaml: the default model when --dataset is not given."""
    datasets = load_params().get("datasets") or {}
    if not datasets:
        raise UserError("params.yaml lists no datasets: pass --dataset")
    return next(iter(datasets))


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as err:
        fail(str(err))


if __name__ == "__main__":
    main()
