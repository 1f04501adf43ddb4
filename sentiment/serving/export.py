"""The exported forms of the fine-tuned model (sentiment.serving.forms names them): a builder per form, each run
once per export, and the scoring of every form on test against torch fp32 at each batch size the gate names.

Speed is measured on the CPU at hand, not here (`--form auto` times the passing forms on first use;
bench/inference.py compares them side by side): timings are not reproducible and do not belong in metrics.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, PositiveInt

from sentiment.config import Section, section
from sentiment.metrics import accuracy_and_f1, scale
from sentiment.serving.forms import FORMS, GateConfig, ServedBatchSize, gate_failures
from sentiment.serving.runtime import Backend, Batches, batches_of, encode, onnx_backend, run_batches, torch_backend


class ExportConfig(Section):
    """params.yaml `export`."""

    batch_size: PositiveInt  # length-sorted dev batches that calibrate the static int8 form
    calibration_rows: PositiveInt  # dev rows (the first, in the clean split's order) whose activations set int8 ranges
    batch_sizes: list[PositiveInt] = Field(min_length=1)  # test is scored at these and at serve/predict's batch sizes
    gate: GateConfig


def scored_batch_sizes(params: dict[str, Any]) -> list[int]:
    """Batch 1, `export.batch_sizes` and the batch sizes serve and predict use: what every form is scored at."""
    served = [section(ServedBatchSize, params, use).batch_size for use in ("serve", "predict")]
    return sorted({1, *section(ExportConfig, params, "export").batch_sizes, *served})


@dataclass(frozen=True)
class BuildInputs:
    """What a form's builder may read: the fp32 model and its tokenizer, and the calibration batches from dev."""

    model: Any  # sentiment.models.classifier.SentimentClassifier
    tokenizer: Any
    calibration: Batches


def export_onnx(target: Path, source: Path | None, inputs: BuildInputs) -> None:
    """fp32 ONNX graph with dynamic batch and sequence axes.

    The TorchScript-based exporter (dynamo=False). The dynamo exporter (torch 2.13, onnxscript
    0.7.2, an extra dependency) exports this encoder, but onnxruntime's quantizers then fail shape
    inference on its graph ("Inferred shape and existing shape differ").
    """
    import torch
    from torch import nn

    class LogitsOnly(nn.Module):
        """The classifier with tensor-only inputs and output, as the ONNX exporter needs."""

        def __init__(self, model: nn.Module):
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    model = copy.deepcopy(inputs.model).cpu()
    sample = inputs.tokenizer(["an example sentence", "a longer example sentence for tracing"], padding=True, return_tensors="pt")
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}, "logits": {0: "batch"}}
    torch.onnx.export(
        LogitsOnly(model).eval(),
        (sample["input_ids"], sample["attention_mask"]),
        str(target),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes=axes,
        opset_version=17,
        dynamo=False,
    )


class CalibrationBatches:
    """onnxruntime's CalibrationDataReader over the dev batches (length-sorted, padded as inference pads)."""

    def __init__(self, batches: Batches):
        self.items = iter([arrays for _, arrays in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.items, None)


def static_int8_options(**changes: Any) -> dict[str, Any]:
    """The static form's `onnxruntime.quantization.quantize_static` keyword arguments (QDQ, MatMul/Gemm, int8
    per-channel weights, asymmetric uint8 activations, MinMax calibration), with `changes` applied (an
    `extra_options` change is merged): the benches quantize their variants from this one recipe."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

    options: dict[str, Any] = {
        "quant_format": QuantFormat.QDQ,
        "per_channel": True,
        "activation_type": QuantType.QUInt8,
        "weight_type": QuantType.QInt8,
        "op_types_to_quantize": ["MatMul", "Gemm"],
        "calibrate_method": CalibrationMethod.MinMax,
        "extra_options": {"ActivationSymmetric": False, "QuantizeBias": False},
    }
    extra = {**options["extra_options"], **changes.pop("extra_options", {})}
    return {**options, **changes, "extra_options": extra}


def quantize_static_int8(target: Path, source: Path | None, inputs: BuildInputs) -> None:
    """onnxruntime static QDQ quantization of MatMul/Gemm (static_int8_options): int8 weights with one scale per
    output channel, uint8 activations with fixed ranges (min/max over the dev batches). The scales do not depend
    on what a text is batched with, so neither does its answer; int8 activations symmetric (S8S8) lost accuracy
    where U8S8 kept it (bench/inference.py)."""
    from onnxruntime.quantization import quantize_static

    quantize_static(str(source), str(target), CalibrationBatches(inputs.calibration), **static_int8_options())


def quantize_dynamic_int8(target: Path, source: Path | None, inputs: BuildInputs) -> None:
    """onnxruntime dynamic int8 quantization of the MatMul/Gemm weights, one scale per output channel;
    activations are quantized to uint8 with ranges taken from each batch (so a label can move with the batch).
    Tensors whose type shape inference cannot tell, the outputs of fused contrib ops, are float32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        per_channel=True,
        weight_type=QuantType.QInt8,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def build_forms(inputs: BuildInputs, out: Path, forms: list[str] | None = None) -> dict[str, Backend]:
    """Write each form's file under `out` (each builder runs once, sources first) and return a backend per form."""
    wanted = list(forms or FORMS)
    done: set[str] = set()

    def build(name: str) -> None:
        spec = FORMS[name]
        if name in done or spec.build is None:
            return
        if spec.source:
            build(spec.source)
        source = out / FORMS[spec.source].file if spec.source else None
        globals()[spec.build](out / spec.file, source, inputs)
        done.add(name)

    for name in wanted:
        build(name)
    return {
        name: torch_backend(inputs.model, bf16=FORMS[name].dtype == "bf16")
        if FORMS[name].backend == "torch"
        else onnx_backend(out / FORMS[name].file)
        for name in wanted
    }


def form_logits(run: Backend, tokenizer: Any, sequences: list[list[int]], batch_sizes: list[int]) -> dict[int, np.ndarray]:
    """Logits of every row at each batch size (length-sorted batches, as predict and serve run)."""
    return {size: run_batches(run, batches_of(tokenizer, sequences, size), len(sequences)) for size in batch_sizes}


def form_figures(logits: dict[int, np.ndarray], reference: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Accuracy, F1-macro and agreement with torch fp32 labels (`reference`) at each batch size, the worst of each;
    label changes and the largest probability change between batch 1 and each other size."""
    by_size = {}
    for size, z in logits.items():
        preds = z.argmax(axis=1)
        by_size[str(size)] = {
            **accuracy_and_f1(labels, preds),
            "agreement_with_torch": float((preds == reference).mean()),
        }
    alone, alone_probs = logits[1].argmax(axis=1), scale(logits[1], 1.0)
    others = [size for size in logits if size != 1]
    return {
        **{k: min(r[k] for r in by_size.values()) for k in ("accuracy", "f1_macro", "agreement_with_torch")},
        "by_batch_size": by_size,
        "label_changes_vs_batch_1": {str(s): int((logits[s].argmax(axis=1) != alone).sum()) for s in others},
        "max_probability_change_vs_batch_1": max(
            (float(np.abs(scale(logits[s], 1.0) - alone_probs).max()) for s in others), default=0.0
        ),
    }


def score_forms(
    backends: dict[str, Backend], tokenizer: Any, texts: list[str], labels: np.ndarray, max_length: int, batch_sizes: list[int],
    gate: GateConfig,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """export.json's figures per form (torch first, the reference): form_figures, each metric's difference from
    torch fp32 (the worst batch size of the form against torch's at batch 1), and the gate's verdict."""
    sizes = sorted({1, *batch_sizes})
    sequences = encode(tokenizer, texts, max_length)
    logits = {form: form_logits(run, tokenizer, sequences, sizes) for form, run in backends.items()}
    reference = logits["torch"][1].argmax(axis=1)
    report = {form: form_figures(z, reference, labels) for form, z in logits.items()}
    torch_at_1 = report["torch"]["by_batch_size"]["1"]
    for form, figures in report.items():
        for metric in ("accuracy", "f1_macro"):
            figures[f"{metric}_delta_vs_torch"] = figures[metric] - torch_at_1[metric]
        figures["max_abs_logit_diff_vs_torch"] = max(float(np.abs(z - logits["torch"][1]).max()) for z in logits[form].values())
        figures["gate_failures"] = gate_failures(figures, gate)
        figures["passes_gate"] = not figures["gate_failures"]
    return report


def save_onnx_config(model: Any, labels: list[str], out: Path) -> None:
    """config.json beside the ONNX files: the encoder's own config with the label names, which is what
    Optimum's `ORTModelForSequenceClassification.from_pretrained(out, file_name=...)` reads (the graph
    takes input_ids and attention_mask and returns logits, as that class expects)."""
    config = copy.deepcopy(model.encoder.config)
    config.id2label, config.label2id = dict(enumerate(labels)), {name: i for i, name in enumerate(labels)}
    config.architectures = None  # the graph is not the encoder's own AutoModel class
    config.save_pretrained(out)


def file_mb(out: Path, form: str, model: Any) -> float:
    """A form's size: its ONNX file, or the torch state dict as torch.save writes it."""
    if FORMS[form].file is not None:
        return (out / FORMS[form].file).stat().st_size / 2**20
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell() / 2**20
