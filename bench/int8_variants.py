"""Why the static int8 form can fail the agreement gate: variants of onnxruntime's static QDQ quantization of
the exported fp32 graph, each scored on all of test against that graph (agreement of labels) and timed beside
it (batched sentences/s, best of two passes), side by side in one run. Prints the table; asserts nothing.

    python bench/int8_variants.py [--dataset sst2] [--model finetune] [--save NAME]

Variants: the served recipe (`serving.export.quantize_static_int8`: MinMax over 512 dev rows); 2,048 rows;
entropy and 99.999th-percentile calibration (histograms need one shape, so their dev batches are padded to the
longest dev row); and the recipe with the feed-forward output MatMuls (their input is the GELU output, whose
range is widest) left in fp32, in every layer or in one. Needs `dvc repro export@<key>` (or export_distill).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from record import save
from sentiment.config import Params
from sentiment.data.datasets import read_clean
from sentiment.machine import describe, machine
from sentiment.models.classifier import load_classifier
from sentiment.models.engine import Batches, padded_batches, run_batches
from sentiment.paths import MODELS, data_dir, export_stage, model_dir
from sentiment.serving.backends import onnx_backend
from sentiment.serving.builders import CalibrationBatches, static_int8_options
from sentiment.serving.export import ExportConfig


def ffn_output_matmuls(graph: onnx.GraphProto) -> list[str]:
    """The MatMul of each layer's feed-forward output projection (BERT-style names: .../output/dense/MatMul)."""
    return [n.name for n in graph.node if n.op_type == "MatMul" and "output/dense" in n.name and "attention" not in n.name]


def fixed_shape(tokenizer, texts: list[str], max_length: int, batch_size: int) -> Batches:
    """Dev batches all padded to the longest dev row (onnxruntime's histogram calibrators stack them)."""
    enc = tokenizer(texts, truncation=True, max_length=max_length, padding="longest", return_tensors="np")
    whole = len(texts) // batch_size * batch_size
    return [
        (np.arange(i, i + batch_size), {k: enc[k][i : i + batch_size].astype(np.int64) for k in ("input_ids", "attention_mask")})
        for i in range(0, whole, batch_size)
    ]


def timed(path: Path, batches: Batches, rows: int) -> tuple[np.ndarray, float]:
    """Logits of every test row and the best of two passes' sentences/s."""
    run = onnx_backend(path)
    rates, logits = [], None
    for _ in range(2):
        start = time.perf_counter()
        logits = run_batches(run, batches, rows)
        rates.append(rows / (time.perf_counter() - start))
    return logits, max(rates)


def main() -> None:
    from onnxruntime.quantization import CalibrationMethod, quantize_static

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--model", choices=MODELS, default="finetune")
    parser.add_argument("--save", metavar="NAME", help="write docs/results/int8_variants_NAME.json")
    args = parser.parse_args()
    params = Params.load()
    cfg = params.section(ExportConfig, "export")
    fp32 = data_dir(args.dataset, export_stage(args.model)) / "model.onnx"
    _, tokenizer, meta = load_classifier(model_dir(args.dataset, args.model), on="cpu")
    max_length = meta["max_length"]
    test = read_clean(args.dataset, "test")["text"].tolist()
    dev = read_clean(args.dataset, "dev")["text"].tolist()
    test_batches = padded_batches(tokenizer, tokenizer(test, truncation=True, max_length=max_length)["input_ids"], 16)
    reference, reference_rate = timed(fp32, test_batches, len(test))
    ffn = ffn_output_matmuls(onnx.load(fp32).graph)
    variants = {
        "served recipe (MinMax, 512 dev rows)": {},
        "MinMax, 2048 dev rows": {"rows": 2048},
        "entropy": {"method": CalibrationMethod.Entropy},
        "percentile 99.999": {"method": CalibrationMethod.Percentile, "extra": {"CalibPercentile": 99.999}},
        "feed-forward outputs fp32, every layer": {"exclude": ffn},
        **{f"feed-forward output fp32, layer {i}": {"exclude": [name]} for i, name in enumerate(ffn)},
    }
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, v in variants.items():
            rows = dev[: v.get("rows", cfg.calibration_rows)]
            if "method" in v:
                calibration = fixed_shape(tokenizer, rows, max_length, cfg.batch_size)
            else:
                calibration = padded_batches(
                    tokenizer, tokenizer(rows, truncation=True, max_length=max_length)["input_ids"], cfg.batch_size
                )
            target = Path(scratch) / "variant.onnx"
            options = static_int8_options(
                nodes_to_exclude=v.get("exclude", []),
                calibrate_method=v.get("method", CalibrationMethod.MinMax),
                extra_options=v.get("extra", {}),
            )
            quantize_static(str(fp32), str(target), CalibrationBatches(calibration), **options)
            logits, rate = timed(target, test_batches, len(test))
            agreement = float((logits.argmax(axis=1) == reference.argmax(axis=1)).mean())
            results.append({"variant": name, "agreement_with_fp32": agreement, "speed_vs_fp32_onnx": rate / reference_rate})
            print(f"{name}: agreement {agreement:.4f}, {rate / reference_rate:.2f}x fp32 ONNX", flush=True)
    m = machine()
    print(describe(m))
    if args.save:
        command = f"python bench/int8_variants.py --dataset {args.dataset} --model {args.model}"
        save("int8_variants", args.save, {"machine": m, "command": command, "dataset": args.dataset, "model": args.model,
                                           "fp32_onnx_sentences_per_s": reference_rate, "variants": results})  # fmt: skip


if __name__ == "__main__":
    main()
