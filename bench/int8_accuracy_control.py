"""Can OpenVINO int8 pass the export gate with NNCF's accuracy control or an ignored scope?

Variants of NNCF's int8 quantization of the export's fp32 ONNX graph, each scored on all of test by the export
gate against torch fp32 (`serving.export.score_forms`) and timed beside torch fp32 in one run. Prints the table; asserts nothing.

    python bench/int8_accuracy_control.py [--dataset sst2] [--model distill] [--dev-rows 1000] [--max-drop 0.002]

Variants: the served recipe (`serving.builders.openvino_int8`: 300 dev calibration rows, one per call);
`nncf.quantize_with_accuracy_control` on the same calibration, reverting ops to fp32 until the candidate has lost
at most `--max-drop` (absolute) of its agreement with torch fp32's labels on the dev rows after the calibration
rows; only the `--dev-rows` of them whose torch label is least sure are run (one per call), the rest are taken to
agree (SST-2's dev rows are short phrases: on all of them the plain form misses 7 of 6,735, all among the 1,000
least sure). Then the recipe with an ignored scope (`--ignore NAME=REGEX`, repeatable, `{last}`: the last layer's
index; default: the feed-forward output MatMuls, whose GELU input has the widest range, and the last layer's; the
classifier head changed nothing on SST-2). Speed: batched sentences/s in length-sorted batches of 64 (tokenization
included, as bench/inference.py), every form once per round, best of `--rounds`, against the model's own torch fp32
and, for a student, the teacher's.
Needs `dvc repro export@<key>` (or export_distill).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from record import model_digests, save
from sentiment.config import Params
from sentiment.data.datasets import encode_labels, read_clean
from sentiment.machine import describe, machine
from sentiment.metrics import scale
from sentiment.models.classifier import load_classifier
from sentiment.models.engine import padded_batches, run_batches, torch_backend
from sentiment.paths import MODELS, data_dir, export_stage, model_dir
from sentiment.serving.backends import openvino_backend
from sentiment.serving.export import ExportConfig, score_forms, scored_batch_sizes
from sentiment.serving.forms import ServedBatchSize

IGNORE = {
    "ffn_out": r".*layer\.\d+/output/dense/MatMul",  # every layer's feed-forward output projection
    "ffn_out_last": r".*layer\.{last}/output/dense/MatMul",  # the last layer's
}


def as_inputs(ids: np.ndarray) -> dict[str, np.ndarray]:
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def fp32_matmuls(model) -> list[str]:
    """MatMul/Gemm ops of an OpenVINO model whose activations no FakeQuantize feeds: they run in fp32 (their weights
    may still be stored int8: accuracy control's `only_activations` restore mode keeps them)."""

    def constant(node) -> bool:
        kind = node.get_type_name()
        return kind == "Constant" or (kind == "Convert" and constant(node.input(0).get_source_output().get_node()))

    def activation_fq(node, depth: int = 0) -> bool:
        kind = node.get_type_name()
        if kind == "FakeQuantize":
            return not constant(node.input(0).get_source_output().get_node())
        passes = kind in ("Convert", "Reshape", "Transpose") and depth < 3
        return passes and any(activation_fq(i.get_source_output().get_node(), depth + 1) for i in node.inputs())

    return [
        op.get_friendly_name()
        for op in model.get_ordered_ops()
        if op.get_type_name() == "MatMul" and not any(activation_fq(i.get_source_output().get_node()) for i in op.inputs())
    ]


def batched(run: Callable, tokenizer: Any, texts: list[str], max_length: int, size: int, passes: int) -> float:
    """Best sentences/s of `passes` over all texts, tokenization included, in length-sorted batches (as bench/inference.py)."""
    best = 0.0
    for _ in range(passes):
        start = time.perf_counter()
        sequences = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        run_batches(run, padded_batches(tokenizer, sequences, size), len(texts))
        best = max(best, len(texts) / (time.perf_counter() - start))
    return best


class Captured(logging.Handler):
    """NNCF's log lines (accuracy control names the ops it reverts in them)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def main() -> None:
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters, RestoreMode

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--model", choices=MODELS, default="distill")
    parser.add_argument("--dev-rows", type=int, default=1000, help="the dev rows (after the calibration rows) whose torch"
                        " fp32 labels are least sure that validate: the other rows are taken to keep their label")  # fmt: skip
    parser.add_argument("--max-drop", type=float, default=0.002, help="dev agreement with torch fp32 it may lose")
    parser.add_argument("--ignore", action="append", metavar="NAME=REGEX", help="an ignored-scope variant (default: "
                        + ", ".join(f"{k}={v}" for k, v in IGNORE.items()) + "); 'none' for none")  # fmt: skip
    parser.add_argument("--rank", choices=["metric", "logits"], default="logits", help="what ranks the ops to revert")
    parser.add_argument("--max-iterations", type=int, default=8, help="ops accuracy control may revert, at most")
    parser.add_argument("--restore-mode", choices=["only_activations", "activations_and_weights"], default="only_activations",
                        help="how a reverted op is restored (its original fp32 weights do not match the SmoothQuant scale"
                        " left on its input: activations_and_weights makes agreement worse)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds, every form once per round")
    parser.add_argument("--save", metavar="NAME", help="write docs/results/int8_accuracy_control_NAME.json")
    args = parser.parse_args()
    ignores = dict(IGNORE) if not args.ignore else dict(i.split("=", 1) for i in args.ignore if i != "none")
    params = Params.load()
    cfg = params.section(ExportConfig, "export")
    batch_sizes = scored_batch_sizes(cfg, [params.section(ServedBatchSize, use) for use in ("serve", "predict")])
    onnx = data_dir(args.dataset, export_stage(args.model)) / "model.onnx"
    model, tokenizer, meta = load_classifier(model_dir(args.dataset, args.model), on="cpu")
    max_length = meta["max_length"]
    test = read_clean(args.dataset, "test")
    texts, labels = test["text"].tolist(), encode_labels(test["label"], meta["labels"], f"{args.dataset} test")
    sequences = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    dev = read_clean(args.dataset, "dev")["text"].tolist()
    rows = cfg.calibration_rows
    calibration = tokenizer(dev[:rows], truncation=True, max_length=max_length)["input_ids"]
    rest = tokenizer(dev[rows:], truncation=True, max_length=max_length)["input_ids"]
    logits = run_batches(torch_backend(model), padded_batches(tokenizer, rest, 64), len(rest))
    top2 = np.sort(scale(logits, 1.0), axis=1)[:, -2:]
    uncertain = np.sort(np.argsort(top2[:, 1] - top2[:, 0], kind="stable")[: args.dev_rows])
    check, reference = [rest[i] for i in uncertain], logits.argmax(axis=1)[uncertain]

    calibration_set = nncf.Dataset([np.asarray([r], dtype=np.int64) for r in calibration], as_inputs)
    validation_set = nncf.Dataset([(i, np.asarray([r], dtype=np.int64)) for i, r in enumerate(check)], lambda x: as_inputs(x[1]))

    def agreement(compiled, items) -> tuple[float, list[Any]]:
        """Agreement with torch fp32 over all dev rows after the calibration rows, counting only the misses among
        `items` (the rest are the confident rows, assumed to agree); per item, its 0/1 agreement (`--rank metric`:
        NNCF ranks the ops by the agreement they restore) or its logits (`--rank logits`: by the logits' error)."""
        out = compiled.output(0)
        logits = [(i, compiled(as_inputs(ids))[out]) for i, ids in items]
        hits = [float(np.argmax(z) == reference[i]) for i, z in logits]
        return 1.0 - (len(hits) - sum(hits)) / len(rest), hits if args.rank == "metric" else [[z] for _, z in logits]

    variants: dict[str, Callable[[], Any]] = {
        "plain": lambda: nncf.quantize(
            ov.convert_model(str(onnx)), calibration_set, model_type=nncf.ModelType.TRANSFORMER, subset_size=rows
        ),
        "accuracy_control": lambda: nncf.quantize_with_accuracy_control(
            ov.convert_model(str(onnx)),
            calibration_set,
            validation_set,
            agreement,
            max_drop=args.max_drop,
            drop_type=nncf.DropType.ABSOLUTE,
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=rows,
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                max_num_iterations=args.max_iterations, restore_mode=RestoreMode(args.restore_mode)
            ),
        ),  # fmt: skip
        **{
            f"ignore_{name}": (
                lambda pattern=pattern: nncf.quantize(
                    ov.convert_model(str(onnx)),
                    calibration_set,
                    model_type=nncf.ModelType.TRANSFORMER,
                    subset_size=rows,
                    ignored_scope=nncf.IgnoredScope(patterns=[pattern], validate=False),
                )  # fmt: skip
            )
            for name, pattern in ((n, p.format(last=model.encoder.config.num_hidden_layers - 1)) for n, p in ignores.items())
        },
    }
    log = Captured()
    logging.getLogger("nncf").addHandler(log)
    info: dict[str, dict[str, Any]] = {}
    runs = {"torch": torch_backend(model)}
    with tempfile.TemporaryDirectory() as scratch:
        for name, build in variants.items():
            log.lines.clear()
            start = time.perf_counter()
            quantized = build()
            seconds = time.perf_counter() - start
            path = Path(scratch) / f"{name}.xml"
            ov.save_model(quantized, str(path), compress_to_fp16=False)
            reverted = [line for line in log.lines if any(k in line for k in ("reverted back", "Accuracy drop", "Metric of"))]
            compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
            on_dev = agreement(compiled, enumerate(np.asarray([r], dtype=np.int64) for r in check))[0]
            kept = fp32_matmuls(ov.Core().read_model(str(path)))
            info[name] = {"build_s": seconds, "fp32_matmuls": kept, "nncf_log": reverted, "dev_agreement": on_dev}
            print(f"{name}: built in {seconds:.1f} s, dev agreement {on_dev:.4f}, fp32 MatMuls {info[name]['fp32_matmuls']}")
            for line in reverted:
                print("   ", line.replace("\n", "\n    "))
            runs[name] = openvino_backend(path, "f32")
        gate = score_forms(runs, tokenizer, sequences, labels, batch_sizes, cfg.gate)
        if args.model != "finetune":
            teacher, _, _ = load_classifier(model_dir(args.dataset, "finetune"), on="cpu")
            runs["teacher_torch"] = torch_backend(teacher)
        for run in runs.values():
            run(*[np.ones((1, 8), dtype=np.int64)] * 2)  # warm-up
        speed = dict.fromkeys(runs, 0.0)
        for _ in range(args.rounds):  # interleaved, best of the rounds: load from elsewhere hits every form alike
            for name, run in runs.items():
                speed[name] = max(speed[name], batched(run, tokenizer, texts, max_length, 64, passes=1))
    base = speed.get("teacher_torch", speed["torch"])
    m = machine()
    print(f"{describe(m)}; load average {os.getloadavg()[0]:.1f}; {args.dataset} {args.model}: {len(texts)} test texts, "
          f"{len(check)} of {len(rest)} dev rows validate, max drop {args.max_drop}; gate batch sizes {batch_sizes}")  # fmt: skip
    print("| variant | agreement | accuracy (delta) | F1 (delta) | sent/s | vs torch fp32 | vs teacher torch | labels moved "
          "| max prob move | gate | build s | dev agreement | fp32 MatMuls |")  # fmt: skip
    print("| --- " * 13 + "|")
    results = []
    for name, g in gate.items():
        moved = max(g["label_changes_vs_batch_1"].values(), default=0)
        extra = info.get(name, {})
        row = {"variant": name, "sentences_per_s": speed[name], "speed_vs_torch": speed[name] / speed["torch"],
               "speed_vs_teacher_torch": speed[name] / base, **{k: g[k] for k in ("agreement_with_torch", "accuracy",
               "f1_macro", "accuracy_delta_vs_torch", "f1_macro_delta_vs_torch", "label_changes_vs_batch_1",
               "max_probability_change_vs_batch_1", "passes_gate", "gate_failures")}, **extra}  # fmt: skip
        results.append(row)
        print(f"| {name} | {g['agreement_with_torch']:.4f} | {g['accuracy']:.4f} ({g['accuracy_delta_vs_torch']:+.4f}) | "
              f"{g['f1_macro']:.4f} ({g['f1_macro_delta_vs_torch']:+.4f}) | {speed[name]:.0f} | "
              f"{speed[name] / speed['torch']:.2f}x | {speed[name] / base:.2f}x | {moved} | "
              f"{g['max_probability_change_vs_batch_1']:.2g} | {'passes' if g['passes_gate'] else 'fails'} | "
              f"{extra.get('build_s', 0):.1f} | {extra.get('dev_agreement', 1.0):.4f} | "
              f"{len(extra.get('fp32_matmuls', []))} |")  # fmt: skip
    if "teacher_torch" in speed:
        print(f"teacher torch fp32: {speed['teacher_torch']:.0f} sent/s")
    if args.save:
        command = f"python bench/int8_accuracy_control.py --dataset {args.dataset} --model {args.model}"
        models = [(args.dataset, args.model), *([(args.dataset, "finetune")] if args.model != "finetune" else [])]
        save("int8_accuracy_control", args.save, {"machine": m, "command": command, "dataset": args.dataset,
             "model": args.model, "max_drop": args.max_drop, "dev_rows": len(check), "model_digests": model_digests(models),
             "teacher_torch_sentences_per_s": speed.get("teacher_torch"), "variants": results})  # fmt: skip


if __name__ == "__main__":
    logging.getLogger("nncf").setLevel(logging.INFO)
    main()
