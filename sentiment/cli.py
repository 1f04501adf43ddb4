"""`sentiment` command: label, explain or serve with a dataset's fine-tuned model.

sentiment predict --dataset <key> --input reviews.csv --text-column review --output out.jsonl
echo "what a lovely film" | sentiment predict                # the first dataset of params.yaml
sentiment explain --dataset <key> "not bad at all"
sentiment serve --dataset <key> --port 8000              # --form auto: the fastest form that passes export's gate
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sentiment.config import PARAMS_FILE, Params, UserError
from sentiment.data.text import CleanConfig, Cleaning, clean_text
from sentiment.io import atomic_path, model_facts, trained_model
from sentiment.metrics import scale
from sentiment.models.engine import score_logits, torch_backend
from sentiment.paths import MODELS
from sentiment.serving.forms import FORM_CHOICES
from sentiment.serving.inputs import CHUNK, FORMATS, decode, input_rows
from sentiment.serving.long_text import PredictConfig
from sentiment.stage import OneLineParser, fail

PIPELINE_PARAMS = Path(__file__).resolve().parent.parent / "params.yaml"  # the pipeline's own, beside this code


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


def load_model(dataset: str, model: str, **kwargs: Any) -> tuple[Any, Any, dict[str, Any]]:
    """(model, tokenizer, head metadata) of a dataset's trained model; kwargs go to load_classifier."""
    from sentiment.models.classifier import load_classifier

    with no_loading_bar():
        return load_classifier(trained_model(dataset, model), **kwargs)


def predictions(scorer: Any, rows: list[tuple[Any, str]], reading: PredictConfig) -> tuple[pd.DataFrame, dict[str, int]]:
    """One output row per input row, in order: id, text, label, label_id, a probability per label and a reason
    (why a row has no label, or how a long one was read); and counts of empty and long rows."""
    names = scorer.labels
    texts = [text for _, text in rows]
    kept = [i for i, text in enumerate(texts) if clean_text(text, scorer.cleaning)]
    lengths = dict(zip(kept, scorer.token_counts([texts[i] for i in kept]), strict=True))
    long = {i for i, n in lengths.items() if n > scorer.max_length}
    probs = np.full((len(texts), len(names)), np.nan)
    if kept:
        probs[kept] = np.round(scorer.probabilities([texts[i] for i in kept]), 6)
    best = np.where(np.isnan(probs).any(axis=1), -1, np.nan_to_num(probs).argmax(axis=1))
    how = "truncated" if reading.long_text == "truncate" else "read in overlapping windows"
    out = pd.DataFrame(
        {
            "id": [row_id for row_id, _ in rows],
            "text": texts,
            "label": [names[k] if k >= 0 else "" for k in best],
            "label_id": pd.array([k if k >= 0 else None for k in best], dtype="Int64"),
            **{f"prob_{name}": probs[:, j] for j, name in enumerate(names)},
            "reason": [
                "empty after cleaning" if k < 0 else f"longer than max_length: {how}" if i in long else ""
                for i, k in enumerate(best)
            ],
        }
    )
    return out, {"empty": len(texts) - len(kept), "long": len(long)}


def chunks(rows: Iterator[tuple[Any, str]], size: int) -> Iterator[list[tuple[Any, str]]]:
    chunk: list[tuple[Any, str]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def rows_text(frame: pd.DataFrame, fmt: str, header: bool) -> str:
    if fmt == "jsonl":
        return frame.to_json(orient="records", lines=True, force_ascii=False) if len(frame) else ""
    return frame.to_csv(index=False, header=header)


WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


@contextmanager
def output_stream(target: str) -> Iterator[Any]:
    """stdout, or a temporary sibling of `target` renamed onto it only when every row is written (an
    interrupted run leaves no half file), with the user's usual file mode; a failed write (a full disk, a
    read-only folder) is a one-line error, and the temporary file is removed."""
    if target == "-":
        yield sys.stdout
        return
    ours = [target]  # the files this output writes: an error naming another file (the input's) is not a write error
    try:
        with atomic_path(target) as tmp:
            ours.append(str(tmp))
            with open(tmp, "w", encoding="utf-8", newline="") as stream:
                yield stream
            tmp.chmod(0o666 & ~current_umask())  # a temporary file is created 0600
    except OSError as err:
        if err.errno not in WRITE_ERRORS or (err.filename is not None and str(err.filename) not in ours):
            raise
        raise UserError(f"cannot write {target}: {err.strerror}") from None


def cmd_serve(args: argparse.Namespace) -> None:
    from sentiment.serving.server import serve

    params = command_params()
    serve(params, args.dataset or first_dataset(params), args.form, args.host, args.port, args.model)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def command_params() -> Params:
    """params.yaml of the working directory (a checkout, or a project of the user's); elsewhere the pipeline's own
    beside this code, whose sections say how its models were trained and read text."""
    for path in (PARAMS_FILE, PIPELINE_PARAMS):
        if path.exists():
            return Params.load(path)
    raise UserError(f"no params.yaml here or at {PIPELINE_PARAMS}: run the command in a checkout")


def cleaning(params: Params) -> Cleaning:
    """The pipeline's light cleaning (params.yaml `clean`)."""
    return params.section(CleanConfig, "clean").light()


def cmd_predict(args: argparse.Namespace) -> None:
    """Check every input row, then read, score and write CHUNK rows at a time, with a progress bar on stderr:
    a malformed row is named before the model loads and before any output is written."""
    from tqdm.auto import tqdm

    from sentiment.serving.runtime import FinetuneScorer

    with input_rows(args.input, args.input_format, args.text_column, args.id_column) as rows:
        rows.check()
        params = command_params()
        overrides = {k: v for k, v in (("long_text", args.long_text), ("batch_size", args.batch_size)) if v}
        reading = params.section(PredictConfig, "predict").model_copy(update=overrides)
        fmt = args.output_format or ("jsonl" if args.output.endswith((".jsonl", ".json")) else "csv")
        dataset = args.dataset or first_dataset(params)
        with no_loading_bar():
            scorer = FinetuneScorer(
                dataset, args.form, cleaning(params), reading, reading.batch_size, model=args.model or reading.model
            )
        print(f"model {scorer.model}, form {scorer.form} ({scorer.form_reason})", file=sys.stderr)
        totals = {"empty": 0, "long": 0}
        bar = tqdm(total=rows.size, unit="B", unit_scale=True, desc="predict", disable=None)
        with output_stream(args.output) as out, bar:
            header = True
            for chunk in chunks(iter(rows), CHUNK):
                frame, counts = predictions(scorer, chunk, reading)
                out.write(rows_text(frame, fmt, header))
                header = False
                totals = {k: totals[k] + counts[k] for k in totals}
                bar.update(sum(len(t.encode()) + 1 for _, t in chunk))
            if header:  # no input at all: a CSV still gets its header
                out.write(rows_text(predictions(scorer, [], reading)[0], fmt, header=True))
    if totals["empty"]:
        print(f"{totals['empty']} empty texts: no label (reason: empty after cleaning)", file=sys.stderr)
    if totals["long"] and reading.long_text == "truncate":
        print(f"warning: {totals['long']} texts were longer than the model's max_length and were truncated", file=sys.stderr)
    elif totals["long"]:
        print(f"{totals['long']} texts longer than the model's max_length were scored in overlapping windows", file=sys.stderr)


def attention_config(params: Params, ig_steps: int | None):
    """params.yaml `attention` (IG baseline, steps, tolerance) for one text: the last layer's maps."""
    from sentiment.evaluation.attribution import AttentionConfig

    cfg = params.section(AttentionConfig, "attention")
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
    params = command_params()
    reading = params.section(PredictConfig, "predict")
    text = clean_text(text.strip(), cleaning(params))
    if not text:
        raise UserError("the text is empty after cleaning")
    args.dataset = args.dataset or first_dataset(params)
    chosen = args.model or reading.model
    model, tokenizer, meta = load_model(args.dataset, chosen, need_attention_weights=True)
    result = explain_example(model, tokenizer, text, meta["max_length"], attention_config(params, args.ig_steps))
    names = meta["labels"]
    # the prediction as `predict --form torch` answers it: the scoring engine's logits (windows as predict reads a
    # long text; the maps above explain its first window), the model's dev temperature, the one softmax
    logits = score_logits(torch_backend(model), tokenizer, [text], meta["max_length"], 1, reading)
    probs = scale(logits, float(model_facts(args.dataset, chosen)["temperature"]))[0]
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


FORM_HELP = "the model's form (auto: the fastest on this CPU of those that pass the export stage's gate)"
MODEL_HELP = "finetune (the fine-tuned model) or distill (its distilled student); default: params.yaml predict.model"


def positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return int(value)


def parser() -> argparse.ArgumentParser:
    root = OneLineParser(prog="sentiment", description="Use the pipeline's fine-tuned sentiment models.")
    sub = root.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="label text from a CSV, JSONL, text file or stdin")
    p.add_argument("--dataset", help="whose fine-tuned model to use (a params.yaml datasets key; default: the first)")
    p.add_argument("--input", default="-", help="a .csv, .jsonl or text file (one text per line); '-' = stdin")
    p.add_argument("--input-format", choices=FORMATS, help="override the format guessed from the suffix")
    p.add_argument("--text-column", default="text", help="the text column (CSV) or field (JSONL)")
    p.add_argument("--output", default="-", help="output file (.csv or .jsonl); '-' = stdout")
    p.add_argument("--output-format", choices=["csv", "jsonl"])
    p.add_argument("--id-column", help="the id column (CSV) or field (JSONL) written with each row (default: row number)")
    p.add_argument("--batch-size", type=positive_int, help="texts (or windows) per model call (default: predict.batch_size)")
    p.add_argument("--model", choices=MODELS, help=MODEL_HELP)
    p.add_argument("--form", choices=FORM_CHOICES, default="auto", help=FORM_HELP)
    p.add_argument(
        "--long-text", choices=["truncate", "chunk"], help="texts over max_length: default params.yaml predict.long_text"
    )
    p.set_defaults(func=cmd_predict)
    e = sub.add_parser("explain", help="prediction, top tokens per attribution method, and an attention heatmap")
    e.add_argument("text", nargs="?", help="the text to explain")
    e.add_argument("--file", help="read the text from this file instead")
    e.add_argument("--dataset", help="whose fine-tuned model to use (a params.yaml datasets key; default: the first)")
    e.add_argument("--model", choices=MODELS, help=MODEL_HELP)
    e.add_argument("--top", type=int, default=5, help="tokens listed per method")
    e.add_argument("--ig-steps", type=int, help="first integrated-gradients step count (default: params.yaml attention.ig_steps)")
    e.add_argument("--output", default="explain.png", help="where to write the heatmap PNG")
    e.set_defaults(func=cmd_explain)
    s = sub.add_parser("serve", help="an HTTP API: POST /v1/predict, POST /predict (TEI), GET /v1/model, /readyz, /metrics")
    s.add_argument("--dataset", help="whose fine-tuned model to serve (a params.yaml datasets key; default: the first)")
    s.add_argument("--model", choices=MODELS, help=MODEL_HELP)
    s.add_argument("--form", choices=FORM_CHOICES, default="auto", help=FORM_HELP)
    s.add_argument("--host", default="127.0.0.1", help="bind address (loopback by default)")
    s.add_argument("--port", type=int, default=8000)
    s.set_defaults(func=cmd_serve)
    return root


def first_dataset(params: Params) -> str:
    """The first dataset of params.yaml: the default model when --dataset is not given."""
    if not params.dataset_keys:
        raise UserError("params.yaml lists no datasets: pass --dataset")
    return params.dataset_keys[0]


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as err:
        fail(str(err))


if __name__ == "__main__":
    main()
