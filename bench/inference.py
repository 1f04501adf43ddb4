"""Inference speed of every form of the fine-tuned model on the same test texts, side by side in one run,
with the CPU's instruction sets and each form's fraction of the CPU's peak for its data type, and each form's
answers across batch sizes 1, 8, 16 and 64: labels changed against batch 1 and the largest probability change.

    python bench/inference.py [--dataset sst2] [--single 200] [--batch-size 64] [--save NAME]

Forms: every form of sentiment/serving/forms.py (built by the export stage's builders, so the rows are the
forms `--form` serves), and candidates that are not served, for comparison: dynamic int8 with one weight scale
per tensor, static QDQ with int8 (S8S8) activations;
and OpenVINO (fp32, bf16 where the CPU has it, int8 from the static QDQ graphs) when the `openvino` package is
installed (`pip install openvino`; not a dependency). Every form is built here from the fine-tuned model, in a
temporary folder, and scored on all of test with the export stage's gate (params.yaml `export.gate`), so each
row's figures are measured, not quoted.

Batch size 1: p50 latency over the first `--single` test texts (tokenization included, as a request pays).
Batched: sentences/s over all test texts in length-sorted batches (as `predict` runs), best of two passes.
Peak: cores x clock x FLOP (or int8 ops) per cycle for the form's data type, as assumed in `PEAK` below;
the achieved rate counts the model config's FLOPs per token times the real (unpadded) tokens per second.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from record import save
from sentiment.config import load_params, section
from sentiment.data.datasets import read_clean
from sentiment.machine import BF16_FLAGS, clock_ghz, describe, machine
from sentiment.models.classifier import load_classifier
from sentiment.serving.export import (
    BuildInputs,
    CalibrationBatches,
    ExportConfig,
    build_forms,
    score_forms,
    scored_batch_sizes,
    static_int8_options,
)
from sentiment.serving.forms import FORMS
from sentiment.serving.runtime import Backend, batches_of, encode, onnx_backend, run_batches

# FLOP (or int8 multiply-adds x 2) per cycle per core, by what the CPU executes for each data type.
# Intel server cores with AVX-512 run two 512-bit FMA ports (VNNI and AVX512-BF16 on both) and AMX tiles
# (1,024 bf16 FLOP and 2,048 int8 ops per cycle); AMD Zen 4 runs AVX-512 on 256-bit units (half the rate);
# AVX2 machines run two 256-bit FMA ports and int8 through VPMADDUBSW (half the VNNI rate).
PEAK = {
    "intel": {"fp32": 64, "bf16": (1024, "amx_bf16", 128, "avx512_bf16"), "int8": (2048, "amx_int8", 256, "avx512_vnni")},
    "amd": {"fp32": 32, "bf16": (64, "avx512_bf16"), "int8": (128, "avx512_vnni")},
    "avx2": {"fp32": 32, "bf16": (32, "avx2"), "int8": (64, "avx2")},
}


def peak_ops_per_cycle(m: dict[str, Any], dtype: str) -> int:
    """The assumed per-core peak for `dtype` on this machine (see PEAK): the best unit whose flag it has."""
    kind = "avx2" if "avx512f" not in m["cpu_flags"] else "amd" if "AMD" in m["cpu"] else "intel"
    entry = PEAK[kind][dtype]
    if isinstance(entry, int):
        return entry
    pairs = list(zip(entry[::2], entry[1::2], strict=True))
    return next((ops for ops, flag in pairs if flag in m["cpu_flags"]), PEAK[kind]["fp32"])


def flops_per_token(config) -> float:
    """Encoder FLOPs per token from its config: 2 x (4 H^2 + 2 H I) per layer (projections and MLP);
    attention scores add 4 x seq x H per layer, small at these lengths and left out."""
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    return 2.0 * layers * (4 * h * h + 2 * h * i)


def qdq_s8s8(source: Path, target: Path, calibration: list) -> None:
    """The static form's QDQ quantization with int8 symmetric activations (S8S8) instead of uint8 (U8S8)."""
    from onnxruntime.quantization import QuantType, quantize_static

    options = static_int8_options(activation_type=QuantType.QInt8, extra_options={"ActivationSymmetric": True})
    quantize_static(str(source), str(target), CalibrationBatches(calibration), **options)


def per_tensor_dynamic(source: Path, target: Path) -> None:
    """The export stage's dynamic quantization with one weight scale per tensor instead of per channel."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source), str(target), weight_type=QuantType.QInt8, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT}
    )


def openvino_backend(path: Path, precision: str) -> Backend:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()

    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return request.infer({"input_ids": input_ids, "attention_mask": attention_mask})[compiled.output(0)].copy()

    return run


Forms = dict[str, tuple[Callable[[], Backend], str]]


def build_candidates(model, tokenizer, folder: Path, calibration: list, m: dict[str, Any]) -> Forms:
    """form -> (a function building its backend, its data type): the registry's forms, then the candidates."""
    backends = build_forms(BuildInputs(model, tokenizer, calibration), folder)
    forms: Forms = {name: ((lambda run=run: run), FORMS[name].dtype) for name, run in backends.items()}
    onnx = folder / FORMS["onnx"].file
    per_tensor_dynamic(onnx, folder / "per_tensor.onnx")
    qdq_s8s8(onnx, folder / "qdq_s8s8.onnx", calibration)
    bf16 = any(f in m["cpu_flags"] for f in BF16_FLAGS)
    forms["onnx_int8_dynamic_per_tensor"] = (lambda: onnx_backend(folder / "per_tensor.onnx"), "int8")
    forms["onnx_int8_static_s8s8"] = (lambda: onnx_backend(folder / "qdq_s8s8.onnx"), "int8")
    try:
        import openvino  # noqa: F401
    except ImportError:
        return forms
    forms["openvino"] = (lambda: openvino_backend(onnx, "f32"), "fp32")
    if bf16:
        forms["openvino_bf16"] = (lambda: openvino_backend(onnx, "bf16"), "bf16")
    forms["openvino_int8"] = (lambda: openvino_backend(folder / "qdq_s8s8.onnx", "f32"), "int8")
    forms["openvino_int8_u8s8"] = (lambda: openvino_backend(folder / FORMS["onnx_int8_static"].file, "f32"), "int8")
    return forms


def single_p50_ms(run: Backend, tokenizer, texts: list[str], max_length: int) -> float:
    times = []
    for text in texts:
        start = time.perf_counter()
        enc = tokenizer([text], truncation=True, max_length=max_length, return_tensors="np")
        run(enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64))
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def batched(run: Backend, tokenizer, texts: list[str], max_length: int, batch_size: int) -> tuple[float, np.ndarray]:
    """(best sentences/s of two passes, tokenization included; the logits)."""
    best, logits = 0.0, None
    for _ in range(2):
        start = time.perf_counter()
        logits = run_batches(run, batches_of(tokenizer, encode(tokenizer, texts, max_length), batch_size), len(texts))
        best = max(best, len(texts) / (time.perf_counter() - start))
    return best, logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--single", type=int, default=200, help="texts timed one by one")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--save", metavar="NAME", help="also write docs/results/inference_NAME.json (committed)")
    args = parser.parse_args()
    m = machine()
    model, tokenizer, meta = load_classifier(Path("data") / args.dataset / "finetune" / "model", on="cpu")
    test = read_clean(args.dataset, "test")
    texts, labels = test["text"].tolist(), test["label"].to_numpy()
    params = load_params()
    cfg, batch_sizes = section(ExportConfig, params, "export"), scored_batch_sizes(params)
    dev = read_clean(args.dataset, "dev")["text"].tolist()[: cfg.calibration_rows]
    calibration = batches_of(tokenizer, encode(tokenizer, dev, meta["max_length"]), cfg.batch_size)
    tokens = np.mean([len(ids) for ids in tokenizer(texts, truncation=True, max_length=meta["max_length"])["input_ids"]])
    flops = flops_per_token(model.encoder.config)
    clock = clock_ghz()
    print(f"{describe(m)}; clock {clock:.2f} GHz; {args.dataset}: {len(texts)} test texts, {tokens:.1f} tokens each, "
          f"{flops / 1e6:.1f} MFLOP per token; torch threads {torch.get_num_threads()}")  # fmt: skip
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        forms = build_candidates(model, tokenizer, Path(tmp), calibration, m)
        runs = {name: make() for name, (make, _) in forms.items()}
        gate = score_forms(runs, tokenizer, texts, labels, meta["max_length"], batch_sizes, cfg.gate)
        for name, (_, dtype) in forms.items():
            run = runs[name]
            run(*[np.ones((1, 8), dtype=np.int64)] * 2)  # warm-up
            rate, _ = batched(run, tokenizer, texts, meta["max_length"], args.batch_size)
            peak = m["cores"] * clock * 1e9 * peak_ops_per_cycle(m, dtype)
            figures = gate[name]
            rows[name] = {
                "dtype": dtype,
                "batch1_p50_ms": single_p50_ms(run, tokenizer, texts[: args.single], meta["max_length"]),
                "batch_sentences_per_s": rate,
                "peak_fraction": rate * tokens * flops / peak,
                "test_accuracy": figures["accuracy"],
                "test_f1_macro": figures["f1_macro"],
                "agreement_with_torch": figures["agreement_with_torch"],
                "label_changes_vs_batch_1": figures["label_changes_vs_batch_1"],
                "max_probability_change_vs_batch_1": figures["max_probability_change_vs_batch_1"],
                "passes_gate": figures["passes_gate"],
                "served": name in FORMS,
            }
        del runs
    base = rows["torch"]
    print("| form | dtype | batch 1 p50 ms | batched sent/s | vs torch fp32 | of peak | test acc | F1 | as torch "
          "| labels changed vs batch 1 (each larger batch size) | max prob change | gate |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        changes = "/".join(str(r["label_changes_vs_batch_1"][str(b)]) for b in batch_sizes[1:])
        print(f"| {name} | {r['dtype']} | {r['batch1_p50_ms']:.2f} | {r['batch_sentences_per_s']:.0f} | "
              f"{r['batch_sentences_per_s'] / base['batch_sentences_per_s']:.2f}x | {r['peak_fraction']:.1%} | "
              f"{r['test_accuracy']:.4f} | {r['test_f1_macro']:.4f} | {r['agreement_with_torch']:.4f} | {changes} | "
              f"{r['max_probability_change_vs_batch_1']:.2g} | {'pass' if r['passes_gate'] else 'FAIL'} |")  # fmt: skip
    eligible = [n for n, spec in FORMS.items() if n == "torch" or (spec.auto and rows[n]["passes_gate"])]
    auto = max(eligible, key=lambda n: rows[n]["batch_sentences_per_s"])  # what `--form auto` would serve here
    fastest = max((n for n, r in rows.items() if r["passes_gate"]), key=lambda n: rows[n]["batch_sentences_per_s"])
    print(f"auto would serve {auto}; the fastest form or candidate that passes the gate: {fastest}")
    if args.save:
        record = {
            "command": f"python bench/inference.py --dataset {args.dataset}",
            "machine": {**m, "clock_ghz": clock},
            "dataset": args.dataset,
            "batch_size": args.batch_size,
            "tokens_per_sentence": float(tokens),
            "mflop_per_token": flops / 1e6,
            "torch_threads": torch.get_num_threads(),
            "fastest_within_gate": fastest,
            "auto": auto,
            "gate": cfg.gate.model_dump(),
            "forms": rows,
        }
        save("inference", args.save, record)


if __name__ == "__main__":
    main()
