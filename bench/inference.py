"""Inference speed of every form of a trained model on the same test texts, side by side in one run, with the
CPU's instruction sets and each form's fraction of the CPU's peak for its data type, and each form's answers alone,
in length-sorted batches and among random neighbours (the export gate's checks, on all of test).

    python bench/inference.py [--dataset sst2] [--model finetune|distill] [--single 200] [--batch-size 64] [--save NAME]

Forms: every form of sentiment/serving/forms.py (built by its own builders, so the rows are the forms `--form`
serves: torch, ONNX Runtime, OpenVINO fp32/bf16/int8), and candidates that are not served, for comparison: dynamic
int8 with one weight scale per tensor, static QDQ with int8 (S8S8) activations. With `--model distill`, the
teacher's torch fp32 is timed in the same run and is the 1.00x every speed is measured against. The record names
the digest of the model files it measured (`model_digests`), so the generated documents quote it only for those models.

Batch size 1: p50 latency over the first `--single` test texts (tokenization included, as a request pays).
Batched: sentences/s over all test texts in length-sorted batches (as `predict` runs), best of two passes.
Peak: cores x clock x FLOP (or int8 ops) per cycle for the form's data type, as assumed in `PEAK` below;
the achieved rate counts the model config's FLOPs per token times the real (unpadded) tokens per second.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from record import model_digests, save
from sentiment.config import Params
from sentiment.data.datasets import read_clean
from sentiment.machine import clock_ghz, describe, machine
from sentiment.models.classifier import load_classifier
from sentiment.models.engine import Backend, Reading, padded_batches, run_batches, torch_backend, windows
from sentiment.paths import MODELS, data_dir, export_stage, model_dir, results_file
from sentiment.serving.backends import onnx_backend
from sentiment.serving.builders import BuildInputs, CalibrationBatches, static_int8_options
from sentiment.serving.export import ExportConfig, build_forms, score_forms, scored_batch_sizes
from sentiment.serving.forms import FORMS, ServedBatchSize

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


Forms = dict[str, tuple[Callable[[], Backend], str]]


def build_candidates(model, tokenizer, folder: Path, calibration: list[list[int]], batch_size: int) -> Forms:
    """form -> (a function building its backend, its data type): every form of the registry (built by its own
    builders), then the candidates that are not served."""
    backends = build_forms(BuildInputs(model, tokenizer, calibration, batch_size), folder, list(FORMS))
    forms: Forms = {name: ((lambda run=run: run), FORMS[name].dtype) for name, run in backends.items()}
    onnx = folder / FORMS["onnx"].file
    per_tensor_dynamic(onnx, folder / "per_tensor.onnx")
    qdq_s8s8(onnx, folder / "qdq_s8s8.onnx", padded_batches(tokenizer, calibration, batch_size))
    forms["onnx_int8_dynamic_per_tensor"] = (lambda: onnx_backend(folder / "per_tensor.onnx"), "int8")
    forms["onnx_int8_static_s8s8"] = (lambda: onnx_backend(folder / "qdq_s8s8.onnx"), "int8")
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
        sequences = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        logits = run_batches(run, padded_batches(tokenizer, sequences, batch_size), len(texts))
        best = max(best, len(texts) / (time.perf_counter() - start))
    return best, logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--single", type=int, default=200, help="texts timed one by one")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", choices=MODELS, default="finetune", help="which trained model (distill: the student,"
                        " its speed also against the teacher's torch fp32)")  # fmt: skip
    parser.add_argument("--exported", action="store_true", help="time only the export stage's forms, from its files,"
                        " with its gate figures (results/<key>/<export stage>.json), instead of building every form")  # fmt: skip
    parser.add_argument("--save", metavar="NAME", help="also write docs/results/inference_NAME.json (committed)")
    args = parser.parse_args()
    m = machine()
    model, tokenizer, meta = load_classifier(model_dir(args.dataset, args.model), on="cpu")
    test = read_clean(args.dataset, "test")
    texts, labels = test["text"].tolist(), test["label"].to_numpy()
    params = Params.load()
    cfg = params.section(ExportConfig, "export")
    batch_sizes = scored_batch_sizes(cfg, [params.section(ServedBatchSize, use) for use in ("serve", "predict")])
    dev = read_clean(args.dataset, "dev")["text"].tolist()[: cfg.calibration_rows]
    calibration = tokenizer(dev, truncation=True, max_length=meta["max_length"])["input_ids"]
    # test read as the export stage reads it (predict's long-text reading), so its gate figures and these agree
    sequences, owner = windows(tokenizer, texts, meta["max_length"], params.section(Reading, "predict"))
    tokens = np.mean([len(ids) for ids in tokenizer(texts, truncation=True, max_length=meta["max_length"])["input_ids"]])
    flops = flops_per_token(model.encoder.config)
    clock = clock_ghz()
    print(f"{describe(m)}; clock {clock:.2f} GHz; {args.dataset}: {len(texts)} test texts, {tokens:.1f} tokens each, "
          f"{flops / 1e6:.1f} MFLOP per token; torch threads {torch.get_num_threads()}")  # fmt: skip
    rows: dict[str, dict[str, Any]] = {}
    stage = export_stage(args.model)
    exported = json.loads(results_file(args.dataset, stage).read_text())["forms"] if args.exported else {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.exported:  # the export stage's own files and gate figures: only the speed is measured here
            forms = {
                name: ((lambda n=name: FORMS[n].open(data_dir(args.dataset, stage), model)), FORMS[name].dtype)
                for name in exported
            }
        else:
            forms = build_candidates(model, tokenizer, Path(tmp), calibration, cfg.batch_size)
        if args.model != "finetune":  # the teacher's torch fp32, the speed a student is measured against
            teacher, _, _ = load_classifier(model_dir(args.dataset, "finetune"), on="cpu")
            forms["teacher_torch"] = ((lambda: torch_backend(teacher)), "fp32")
        runs = {name: make() for name, (make, _) in forms.items()}
        # the teacher is timed, not gated against the student
        gated = {name: run for name, run in runs.items() if name not in exported and name != "teacher_torch"}
        scored = score_forms(gated, tokenizer, sequences, labels, batch_sizes, cfg.gate, owner) if len(gated) > 1 else {}
        gate = {**exported, **scored}
        for name, (_, dtype) in forms.items():
            run = runs[name]
            run(*[np.ones((1, 8), dtype=np.int64)] * 2)  # warm-up
            rate, _ = batched(run, tokenizer, texts, meta["max_length"], args.batch_size)
            peak = m["cores"] * clock * 1e9 * peak_ops_per_cycle(m, dtype)
            # the teacher's torch is timed, not gated against the student: its answers' figures are its export's
            figures = gate.get(name) or json.loads(results_file(args.dataset, "export").read_text())["forms"]["torch"]
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
    base = rows["teacher_torch" if "teacher_torch" in rows else "torch"]
    print("| form | dtype | batch 1 p50 ms | batched sent/s | vs torch fp32 | of peak | test acc | F1 | as torch "
          "| labels changed vs batch 1 (each larger batch size) | max prob change | gate |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        changes = "/".join(str(r["label_changes_vs_batch_1"][way]) for way in r["label_changes_vs_batch_1"])
        print(f"| {name} | {r['dtype']} | {r['batch1_p50_ms']:.2f} | {r['batch_sentences_per_s']:.0f} | "
              f"{r['batch_sentences_per_s'] / base['batch_sentences_per_s']:.2f}x | {r['peak_fraction']:.1%} | "
              f"{r['test_accuracy']:.4f} | {r['test_f1_macro']:.4f} | {r['agreement_with_torch']:.4f} | {changes} | "
              f"{r['max_probability_change_vs_batch_1']:.2g} | {'pass' if r['passes_gate'] else 'FAIL'} |")  # fmt: skip
    eligible = [n for n, spec in FORMS.items() if n in rows and (n == "torch" or (spec.auto and rows[n]["passes_gate"]))]
    auto = max(eligible, key=lambda n: rows[n]["batch_sentences_per_s"])  # what `--form auto` would serve here
    fastest = max((n for n, r in rows.items() if r["passes_gate"]), key=lambda n: rows[n]["batch_sentences_per_s"])
    print(f"auto would serve {auto}; the fastest form or candidate that passes the gate: {fastest}")
    if args.save:
        measured = [(args.dataset, args.model), *([(args.dataset, "finetune")] if args.model != "finetune" else [])]
        record = {
            "command": f"python bench/inference.py --dataset {args.dataset} --model {args.model}"
            + (" --exported" if args.exported else ""),
            "model_digests": model_digests(measured),
            "model": args.model,
            "baseline": "teacher_torch" if args.model != "finetune" else "torch",
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
