"""`sentiment` command: label, explain or serve with a dataset's fine-tuned model.

sentiment predict --dataset <key> --input reviews.csv --text-column review --output out.jsonl
echo "what a lovely film" | sentiment predict                # the first dataset of params.yaml
sentiment explain --dataset <key> "not bad at all"
sentiment serve --dataset <key> --port 8000              # --form auto: the fastest form that passes export's gate
"""

from __future__ import annotations

import argparse
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
from sentiment.data.text import clean_text
from sentiment.io import atomic_path
from sentiment.metrics import scale
from sentiment.serving.forms import Form
from sentiment.serving.inputs import lone_surrogate
from sentiment.serving.predictor import clean_config, temperature, trained_model
from sentiment.stage import OneLineParser, fail


def decode(raw: bytes, source: str, first_line: int = 1) -> str:
    """UTF-8 text, or a one-line error naming the line (counted from `first_line`) with undecodable bytes."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = first_line + raw[: err.start].count(b"\n")
        raise UserError(f"{source}: line {line} is not valid UTF-8 ({err.reason} at byte {err.start})") from None


CHUNK = 512  # texts read, scored and written at a time: memory stays bounded whatever the input's size


def input_format(source: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    if source == "-":
        return "txt"
    return {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}.get(Path(source).suffix, "txt")


def line_texts(lines: Iterator[bytes], fmt: str, text_column: str, where: str) -> Iterator[str]:
    """Texts of a plain text (one per line) or JSONL (its text field) input, line by line."""
    for number, raw in enumerate(lines, start=1):
        line = decode(raw, where, number).rstrip("\r\n")
        if fmt == "txt":
            yield line
        elif line.strip():
            row = jsonl_row(line, number, where)
            if text_column not in row:
                raise UserError(f"{where}: line {number} has no field {text_column!r} (has {sorted(row)}); set --text-column")
            yield "" if row[text_column] is None else str(row[text_column])


def csv_texts(stream: Any, text_column: str, where: str) -> Iterator[str]:
    """The text column of a CSV with a header, read CHUNK rows at a time (pandas' parser names a malformed row)."""
    try:
        for frame in pd.read_csv(stream, dtype=str, keep_default_na=False, chunksize=CHUNK, encoding="utf-8"):
            if text_column not in frame.columns:
                raise UserError(f"{where}: missing column {text_column!r} (has {list(frame.columns)}); set --text-column")
            for text in frame[text_column]:
                if (at := lone_surrogate(text)) is not None:
                    raise UserError(f"{where}: {text_column!r} has a lone surrogate at character {at} (not valid Unicode)")
                yield text
    except pd.errors.EmptyDataError:
        raise UserError(f"{where}: empty CSV (expected a header line)") from None
    except pd.errors.ParserError as err:
        reason = str(err).strip().splitlines()[-1].removeprefix("Error tokenizing data. C error: ")
        raise UserError(f"{where}: malformed CSV: {reason}") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{where}: not valid UTF-8 ({err.reason})") from None


@contextmanager
def open_input(source: str) -> Iterator[Any]:
    """The input as a binary stream ('-' is stdin); a missing file is a one-line error."""
    if source == "-":
        yield sys.stdin.buffer
        return
    if not Path(source).is_file():
        raise UserError(f"input file not found: {source}")
    with open(source, "rb") as stream:
        yield stream


def iter_texts(source: str, fmt: str | None, text_column: str) -> Iterator[str]:
    """Texts from a CSV (text column), JSONL (text field), or plain text (one per line), as they are read."""
    fmt, where = input_format(source, fmt), "stdin" if source == "-" else source
    with open_input(source) as stream:
        yield from csv_texts(stream, text_column, where) if fmt == "csv" else line_texts(iter(stream), fmt, text_column, where)


def jsonl_row(line: str, number: int, where: str) -> dict[str, Any]:
    """One JSONL line as an object; a malformed line is an error naming it."""
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
    return row


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
    from sentiment.models.classifier import load_classifier

    with no_loading_bar():
        return load_classifier(trained_model(dataset), **kwargs)


def predictions(predictor: Any, texts: list[str]) -> tuple[pd.DataFrame, dict[str, int]]:
    """Label one chunk of texts (empty ones skipped): the table, and counts of skipped and long rows."""
    cfg = predictor.cleaning
    kept = [raw for raw in texts if clean_text(raw, cfg)]
    counts = {"skipped_empty": len(texts) - len(kept), "long": 0}
    names = predictor.labels
    if not kept:
        return pd.DataFrame(columns=["text", "label", "label_id", *(f"prob_{n}" for n in names)]), counts
    cleaned = [clean_text(t, cfg) for t in kept]
    lengths = [len(ids) for ids in predictor.tokenizer(cleaned, truncation=False, verbose=False)["input_ids"]]
    counts["long"] = int(sum(n > predictor.meta["max_length"] for n in lengths))
    probs = predictor.probabilities(kept)
    out = pd.DataFrame({"text": kept, "label": [names[i] for i in probs.argmax(1)], "label_id": probs.argmax(1)})
    for i, name in enumerate(names):
        out[f"prob_{name}"] = np.round(probs[:, i], 6)
    return out, counts


def chunks(texts: Iterator[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for text in texts:
        chunk.append(text)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def rows_text(frame: pd.DataFrame, fmt: str, header: bool) -> str:
    if fmt == "jsonl":
        return frame.to_json(orient="records", lines=True, force_ascii=False) if len(frame) else ""
    return frame.to_csv(index=False, header=header)


@contextmanager
def output_stream(target: str) -> Iterator[Any]:
    """stdout, or a temporary sibling of `target` renamed onto it only when every row is written (an
    interrupted run leaves no half file), with the user's usual file mode."""
    if target == "-":
        yield sys.stdout
        return
    with atomic_path(target) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as stream:
            yield stream
        tmp.chmod(0o666 & ~current_umask())  # a temporary file is created 0600


def cmd_serve(args: argparse.Namespace) -> None:
    from sentiment.serving.server import serve

    serve(args.dataset or first_dataset(), args.form, args.host, args.port)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def cmd_predict(args: argparse.Namespace) -> None:
    """Read, score and write CHUNK texts at a time, with a progress bar on stderr for file inputs."""
    from tqdm.auto import tqdm

    from sentiment.serving.predictor import Predictor, predict_config

    fmt = args.output_format or ("jsonl" if args.output.endswith((".jsonl", ".json")) else "csv")
    if args.input != "-":
        for _ in iter_texts(args.input, args.input_format, args.text_column):  # a bad line is named before any work
            pass
    dataset = args.dataset or first_dataset()
    reading = predict_config()
    if args.long_text:
        reading = reading.model_copy(update={"long_text": args.long_text})
    with no_loading_bar():
        predictor = Predictor(dataset, args.form, args.batch_size, reading)
    print(f"form {predictor.form} ({predictor.form_reason})", file=sys.stderr)
    totals = {"skipped_empty": 0, "long": 0}
    size = Path(args.input).stat().st_size if args.input != "-" else None
    with output_stream(args.output) as out, tqdm(total=size, unit="B", unit_scale=True, desc="predict", disable=None) as bar:
        header = True
        for chunk in chunks(iter_texts(args.input, args.input_format, args.text_column), CHUNK):
            frame, counts = predictions(predictor, chunk)
            out.write(rows_text(frame, fmt, header))
            header = False
            totals = {k: totals[k] + counts[k] for k in totals}
            bar.update(sum(len(t.encode()) + 1 for t in chunk) if size else 0)
        if header:  # no input at all: a CSV still gets its header
            out.write(rows_text(predictions(predictor, [])[0], fmt, header=True))
    if totals["skipped_empty"]:
        print(f"skipped {totals['skipped_empty']} empty lines", file=sys.stderr)
    if totals["long"] and reading.long_text == "truncate":
        print(f"warning: {totals['long']} texts were longer than the model's max_length and were truncated", file=sys.stderr)
    elif totals["long"]:
        print(f"{totals['long']} texts longer than the model's max_length were scored in overlapping windows", file=sys.stderr)


def attention_config(ig_steps: int | None):
    """params.yaml `attention` (IG baseline, steps, tolerance), or its defaults outside a checkout."""
    from sentiment.evaluation.attribution import AttentionConfig

    try:
        cfg = section(AttentionConfig, load_params(), "attention")
    except UserError:
        cfg = AttentionConfig()
    return cfg.model_copy(update={"layers": [-1], **({"ig_steps": ig_steps} if ig_steps else {})})


def cmd_explain(args: argparse.Namespace) -> None:
    from sentiment.evaluation.attribution import attention_heatmap, explain_example

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


FORM_HELP = "the model's form (auto: the fastest that passes the export stage's accuracy gate)"


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
    # 16: on 2 CPU cores ONNX int8 ran full-length review windows faster in batches of 16 than of 64, at
    # less peak memory (bench/predict_reviews.py --runs auto:64 auto:16 compares)
    p.add_argument("--batch-size", type=int, default=16, help="texts (or windows) per model call")
    p.add_argument(
        "--form",
        choices=typing.get_args(Form),
        default="auto",
        help="which form scores (auto: the fastest that passes export's gate)",
    )
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
    s.add_argument(
        "--form",
        choices=typing.get_args(Form),
        default="auto",
        help="which form answers (auto: the fastest that passes export's gate)",
    )
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
