"""Inference speed of every form of the fine-tuned model on the same test texts, side by side in one run,
with the CPU's instruction sets and each form's fraction of the CPU's peak for its data type.

    python bench/inference.py [--dataset sst2] [--single 200] [--batch-size 64] [--save NAME]

Forms: torch fp32 and bf16 autocast (where the CPU has AVX512-BF16 or AMX), torch dynamic int8; the fp32
ONNX graph, before and after onnxruntime's transformer optimizer, and its int8 quantizations by
onnxruntime: dynamic with per-channel weights (the export stage's `onnx_int8` and `onnx_optimized_int8`),
dynamic with per-tensor weights, static QDQ S8S8 and U8S8 (activations calibrated on dev); and OpenVINO
(fp32, bf16 where the CPU has it, int8 from the QDQ graphs) when the `openvino` package is installed
(`pip install openvino`; not a dependency). Every form is built here from the fine-tuned model, in a
temporary folder, and scored on all of test, so each row's accuracy is measured, not quoted.

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

from record import describe, machine, save
from sentiment.data.datasets import read_clean
from sentiment.metrics import f1_macro
from sentiment.models.classifier import load_classifier
from sentiment.serving.export import (
    Backend,
    backend_logits,
    export_onnx,
    onnx_backend,
    optimize_onnx,
    quantize_int8,
    quantize_onnx,
    sorted_batches,
    torch_backend,
)
from sentiment.serving.forms import GATE

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


def clock_ghz() -> float:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz"):
            return float(line.split(":")[1]) / 1000
    return float("nan")


def flops_per_token(config) -> float:
    """Encoder FLOPs per token from its config: 2 x (4 H^2 + 2 H I) per layer (projections and MLP);
    attention scores add 4 x seq x H per layer, small at these lengths and left out."""
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    return 2.0 * layers * (4 * h * h + 2 * h * i)


class DevBatches:
    """onnxruntime's CalibrationDataReader over dev batches, for static (QDQ) quantization."""

    def __init__(self, batches: list):
        self.items = iter([{k: v for k, v in arrays.items()} for _, arrays in batches])

    def get_next(self):
        return next(self.items, None)


def qdq(source: Path, target: Path, calibration: list, activations: str) -> None:
    """Static QDQ quantization of MatMul/Gemm: per-channel int8 weights; activations int8 symmetric (S8S8)
    or uint8 asymmetric (U8S8), their ranges the min and max over dev batches."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    signed = activations == "s8"
    quantize_static(
        str(source),
        str(target),
        DevBatches(calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8 if signed else QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Gemm"],
        extra_options={"ActivationSymmetric": signed, "QuantizeBias": False},
    )


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


def build_forms(model, tokenizer, folder: Path, calibration: list, m: dict[str, Any]) -> Forms:
    """form -> (a function building its backend, its data type); the ONNX files are written under `folder`."""
    onnx, optimized = folder / "model.onnx", folder / "optimized.onnx"
    export_onnx(model, tokenizer, onnx)
    optimize_onnx(onnx, optimized, model.encoder.config)
    files = {
        "onnx_int8": (quantize_onnx, onnx),
        "onnx_int8_per_tensor": (per_tensor_dynamic, onnx),
        "onnx_qdq_s8s8": (lambda s, t: qdq(s, t, calibration, "s8"), onnx),
        "onnx_qdq_u8s8": (lambda s, t: qdq(s, t, calibration, "u8"), onnx),
        "onnx_optimized_int8": (quantize_onnx, optimized),
        "onnx_optimized_int8_per_tensor": (per_tensor_dynamic, optimized),
    }
    for name, (make, source) in files.items():
        make(source, folder / f"{name}.onnx")
    bf16 = any(f in m["cpu_flags"] for f in ("avx512_bf16", "amx_bf16"))
    forms: Forms = {
        "torch": (lambda: torch_backend(model), "fp32"),
        **({"torch_bf16": (lambda: torch_backend(model, bf16=True), "bf16")} if bf16 else {}),
        "torch_int8": (lambda: torch_backend(quantize_int8(model)), "int8"),
        "onnx": (lambda: onnx_backend(onnx), "fp32"),
        "onnx_optimized": (lambda: onnx_backend(optimized), "fp32"),
        **{name: ((lambda p=folder / f"{name}.onnx": onnx_backend(p)), "int8") for name in files},
    }
    try:
        import openvino  # noqa: F401
    except ImportError:
        return forms
    forms["openvino"] = (lambda: openvino_backend(onnx, "f32"), "fp32")
    if bf16:
        forms["openvino_bf16"] = (lambda: openvino_backend(onnx, "bf16"), "bf16")
    forms["openvino_int8"] = (lambda: openvino_backend(folder / "onnx_qdq_s8s8.onnx", "f32"), "int8")
    forms["openvino_int8_u8s8"] = (lambda: openvino_backend(folder / "onnx_qdq_u8s8.onnx", "f32"), "int8")
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
        logits = backend_logits(run, sorted_batches(tokenizer, texts, max_length, batch_size), len(texts))
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
    dev = read_clean(args.dataset, "dev")["text"].tolist()[:512]
    calibration = sorted_batches(tokenizer, dev, meta["max_length"], args.batch_size)
    tokens = np.mean([len(ids) for ids in tokenizer(texts, truncation=True, max_length=meta["max_length"])["input_ids"]])
    flops = flops_per_token(model.encoder.config)
    clock = clock_ghz()
    print(f"{describe(m)}; clock {clock:.2f} GHz; {args.dataset}: {len(texts)} test texts, {tokens:.1f} tokens each, "
          f"{flops / 1e6:.1f} MFLOP per token; torch threads {torch.get_num_threads()}")  # fmt: skip
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        forms = build_forms(model, tokenizer, Path(tmp), calibration, m)
        reference = None
        for name, (make, dtype) in forms.items():
            run = make()
            run(*[np.ones((1, 8), dtype=np.int64)] * 2)  # warm-up
            rate, logits = batched(run, tokenizer, texts, meta["max_length"], args.batch_size)
            reference = logits if reference is None else reference
            preds = logits.argmax(1)
            peak = m["cores"] * clock * 1e9 * peak_ops_per_cycle(m, dtype)
            rows[name] = {
                "dtype": dtype,
                "batch1_p50_ms": single_p50_ms(run, tokenizer, texts[: args.single], meta["max_length"]),
                "batch_sentences_per_s": rate,
                "peak_fraction": rate * tokens * flops / peak,
                "test_accuracy": float((preds == labels).mean()),
                "test_f1_macro": f1_macro(labels, preds),
            }
            del run
    base = rows["torch"]
    for r in rows.values():
        r["passes_gate"] = bool(
            r["test_accuracy"] - base["test_accuracy"] >= -GATE and r["test_f1_macro"] - base["test_f1_macro"] >= -GATE
        )
    print("| form | dtype | batch 1 p50 ms | batched sent/s | vs torch fp32 | of peak | test acc | F1 | gate |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        print(f"| {name} | {r['dtype']} | {r['batch1_p50_ms']:.2f} | {r['batch_sentences_per_s']:.0f} | "
              f"{r['batch_sentences_per_s'] / base['batch_sentences_per_s']:.2f}x | {r['peak_fraction']:.1%} | "
              f"{r['test_accuracy']:.4f} | {r['test_f1_macro']:.4f} | {'pass' if r['passes_gate'] else 'FAIL'} |")  # fmt: skip
    fastest = max((n for n, r in rows.items() if r["passes_gate"]), key=lambda n: rows[n]["batch_sentences_per_s"])
    print(f"fastest form within {GATE * 100:.1f} points of torch fp32: {fastest}")
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
            "forms": rows,
        }
        save("inference", args.save, record)


if __name__ == "__main__":
    main()
