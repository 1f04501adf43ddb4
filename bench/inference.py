"""Inference speed of the fine-tuned model's forms on the same test texts, side by side in one run:
fp32, bf16 autocast, torch dynamic int8, ONNX (onnxruntime) and ONNX int8.

    python bench/inference.py [--dataset sst2] [--single 200] [--batch-size 64]

Batch size 1: p50/p95 latency and sentences/s over the first `--single` test texts.
Large batch: sentences/s over all test texts in length-sorted batches (as `predict` runs).
Accuracy per form comes from the export stage (metrics/<key>/export.json; bf16 is scored here).
Needs `dvc repro export@<dataset>` first. Timings go to bench/results/, never to metrics/.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from sentiment.data import read_clean
from sentiment.export import backend_logits, onnx_backend, quantize_int8, sorted_batches, torch_backend
from sentiment.models import load_classifier


def single_latencies(run, tokenizer, texts: list[str], max_length: int) -> np.ndarray:
    """Seconds per call for batch size 1, tokenization included (what a request pays)."""
    times = []
    for text in texts:
        start = time.perf_counter()
        enc = tokenizer([text], truncation=True, max_length=max_length, return_tensors="np")
        run(enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64))
        times.append(time.perf_counter() - start)
    return np.array(times)


def batch_throughput(run, tokenizer, texts: list[str], max_length: int, batch_size: int) -> float:
    """Sentences/s over all texts, tokenization and length-sorting included."""
    start = time.perf_counter()
    batches = sorted_batches(tokenizer, texts, max_length, batch_size)
    backend_logits(run, batches, len(texts))
    return len(texts) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--single", type=int, default=200, help="texts timed one by one")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--save", metavar="NAME", help="also write docs/results/inference_NAME.json (committed)")
    args = parser.parse_args()
    export_dir = Path("data") / args.dataset / "export"
    if not (export_dir / "model_int8.onnx").exists():
        raise SystemExit(f"no exported model in {export_dir}: run `dvc repro export@{args.dataset}`")
    model, tokenizer, meta = load_classifier(Path("data") / args.dataset / "finetune" / "model")
    test = read_clean(args.dataset, "test")
    texts, labels = test["text"].tolist(), test["label"].to_numpy()
    scores = json.loads((Path("metrics") / args.dataset / "export.json").read_text())["forms"]
    forms = {
        "fp32": torch_backend(model),
        "bf16": torch_backend(model, bf16=True),
        "torch_int8": torch_backend(quantize_int8(model)),
        "onnx": onnx_backend(export_dir / "model.onnx"),
        "onnx_int8": onnx_backend(export_dir / "model_int8.onnx"),
        "onnx_optimized_int8": onnx_backend(export_dir / "model_optimized_int8.onnx"),
    }
    print(f"{args.dataset}: {len(texts)} test texts, torch threads {torch.get_num_threads()}, batch size {args.batch_size}")
    rows = {}
    for name, run in forms.items():
        run(*[np.ones((1, 8), dtype=np.int64)] * 2)  # warm-up
        latency = single_latencies(run, tokenizer, texts[: args.single], meta["max_length"])
        throughput = batch_throughput(run, tokenizer, texts, meta["max_length"], args.batch_size)
        if name in scores:
            accuracy = scores[name]["accuracy"]
        else:
            batches = sorted_batches(tokenizer, texts, meta["max_length"], args.batch_size)
            accuracy = float((backend_logits(run, batches, len(texts)).argmax(1) == labels).mean())
        rows[name] = {
            "batch1_p50_ms": 1000 * float(np.percentile(latency, 50)),
            "batch1_p95_ms": 1000 * float(np.percentile(latency, 95)),
            "batch1_sentences_per_s": len(latency) / float(latency.sum()),
            "batch_sentences_per_s": throughput,
            "test_accuracy": accuracy,
        }
    base = rows["fp32"]
    print("| form | batch 1 p50 ms | batch 1 p95 ms | batch 1 sent/s | batched sent/s | vs fp32 | test acc | acc delta |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        print(
            f"| {name} | {r['batch1_p50_ms']:.1f} | {r['batch1_p95_ms']:.1f} | {r['batch1_sentences_per_s']:.0f} | "
            f"{r['batch_sentences_per_s']:.0f} | {r['batch_sentences_per_s'] / base['batch_sentences_per_s']:.2f}x | "
            f"{r['test_accuracy']:.4f} | {r['test_accuracy'] - base['test_accuracy']:+.4f} |"
        )
    out = Path("bench/results") / f"inference_{args.dataset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {out}")
    if args.save:
        saved = Path("docs/results") / f"inference_{args.save}.json"
        report = {"dataset": args.dataset, "batch_size": args.batch_size, "torch_threads": torch.get_num_threads(), "forms": rows}
        saved.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        print(f"wrote {saved}")


if __name__ == "__main__":
    main()
