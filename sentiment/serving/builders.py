"""How each exported form's file is made (sentiment.serving.forms names the builder of each form): the fp32 ONNX
graph, ONNX Runtime's int8 quantizations of it, and OpenVINO's IR of it, fp32 or int8 from NNCF's post-training
quantization. Each builder writes `target` from `source` (the file of the form it is built from, or None: the
torch model) and `BuildInputs`; the heavy libraries are imported inside the builder that needs them."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sentiment.config import UserError
from sentiment.models.engine import Batches, padded_batches


@dataclass(frozen=True)
class BuildInputs:
    """What a builder may read: the fp32 model and its tokenizer, and the calibration rows from dev (token ids)."""

    model: Any  # sentiment.models.classifier.SentimentClassifier
    tokenizer: Any
    calibration: list[list[int]]
    batch_size: int  # rows per calibration batch where a builder calibrates on batches

    def batches(self) -> Batches:
        return padded_batches(self.tokenizer, self.calibration, self.batch_size)


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
    output channel, uint8 activations with fixed ranges (min/max over the dev batches)."""
    from onnxruntime.quantization import quantize_static

    quantize_static(str(source), str(target), CalibrationBatches(inputs.batches()), **static_int8_options())


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


def openvino_ir(target: Path, source: Path | None, inputs: BuildInputs) -> None:
    """The fp32 ONNX graph as OpenVINO IR (model .xml + weights .bin), weights kept fp32 (OpenVINO would store
    them as fp16 by default)."""
    import openvino as ov

    ov.save_model(ov.convert_model(str(source)), str(target), compress_to_fp16=False)


def openvino_int8(target: Path, source: Path | None, inputs: BuildInputs) -> None:
    """NNCF post-training int8 quantization of the fp32 ONNX graph for OpenVINO (transformer model type: the
    attention's softmax and the layer norms stay fp32), activation ranges from the dev calibration rows, one
    row per call (no padding in the statistics). Fixed ranges: a text's answer does not depend on its batch."""
    nncf_int8(target, source, inputs, keep_fp32=lambda model: [])


def openvino_int8_ffn_fp32(target: Path, source: Path | None, inputs: BuildInputs) -> None:
    """openvino_int8 with each layer's feed-forward output projection kept fp32: the MatMuls whose input is the
    intermediate (post-GELU) activation, the widest-ranged one, found by its width (the encoder config's
    intermediate size; exactly one per layer, or an error), so any encoder family's graph works. Plain int8 of the
    distilled students misses the agreement gate; bench/int8_accuracy_control.py compares the two."""
    config = inputs.model.encoder.config
    width = getattr(config, "intermediate_size", None) or getattr(config, "hidden_dim", None)

    def feed_forward_outputs(model: Any) -> list[str]:
        names = []
        for op in model.get_ops():
            if op.get_type_name() == "MatMul":
                shape = op.input(0).get_partial_shape()
                last = shape[shape.rank.get_length() - 1]
                if last.is_static and last.get_length() == width:
                    names.append(op.get_friendly_name())
        if len(names) != config.num_hidden_layers:
            raise UserError(
                f"openvino_int8_ffn_fp32: {len(names)} MatMuls of input width {width} in the graph, not one per layer "
                f"({config.num_hidden_layers}): leave the form out of export.forms for this encoder"
            )
        return names

    nncf_int8(target, source, inputs, keep_fp32=feed_forward_outputs)


def nncf_int8(target: Path, source: Path | None, inputs: BuildInputs, keep_fp32: Callable[[Any], list[str]]) -> None:
    """NNCF's int8 of the ONNX graph at `source`, calibrated on one dev row per call, the ops `keep_fp32` names in
    the converted model left fp32; saved as OpenVINO IR with fp32 weights."""
    import nncf
    import openvino as ov

    model = ov.convert_model(str(source))
    items = [np.asarray([row], dtype=np.int64) for row in inputs.calibration]
    dataset = nncf.Dataset(items, lambda ids: {"input_ids": ids, "attention_mask": np.ones_like(ids)})
    kept = keep_fp32(model)
    ignored = nncf.IgnoredScope(names=kept) if kept else None
    quantized = nncf.quantize(
        model, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(items), ignored_scope=ignored
    )
    ov.save_model(quantized, str(target), compress_to_fp16=False)
