"""Exported forms of the fine-tuned model, each scored on test like the torch fp32 model.

Forms, by the names `sentiment predict/serve --form` and the behavior/external stages use too:
`torch` (the finetune checkpoint, fp32), `torch_int8` (torch dynamic int8 quantization of every
Linear layer), `onnx` (the fp32 graph run by onnxruntime), `onnx_int8` (onnxruntime's dynamic int8
quantization of that graph, per-channel weights) and `onnx_optimized_int8` (the same after onnxruntime's
transformer fusions). The ONNX files are DVC outs; the torch int8 model is
rebuilt from fp32 in a second, so it is not stored. Speed is measured by bench/inference.py,
not here: timings are not reproducible and do not belong in metrics. Scoring runs the torch fp32
form and onnxruntime on the GPU where there is one (torch's dynamic int8 is CPU-only).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import PositiveInt
from torch import nn

from sentiment.config import Section
from sentiment.metrics import f1_macro
from sentiment.models.classifier import SentimentClassifier, length_sorted_batches
from sentiment.serving.forms import FORM_FILES


class ExportConfig(Section):
    """params.yaml `export`."""

    batch_size: PositiveInt = 64  # length-sorted test batches when scoring each form


# (input_ids, attention_mask) as int64 arrays -> logits
Backend = Callable[[np.ndarray, np.ndarray], np.ndarray]


class LogitsOnly(nn.Module):
    """The classifier with tensor-only inputs and output, as the ONNX exporter needs."""

    def __init__(self, model: SentimentClassifier):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def quantize_int8(model: SentimentClassifier) -> SentimentClassifier:
    """Dynamic int8 quantization (weights int8, activations quantized on the fly) of the Linear layers."""
    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(copy.deepcopy(model).cpu(), {nn.Linear}, dtype=torch.qint8).eval()  # CPU-only kernels


def export_onnx(model: SentimentClassifier, tokenizer, path: Path) -> None:
    """fp32 ONNX graph with dynamic batch and sequence axes.

    The TorchScript-based exporter (dynamo=False). The dynamo exporter (torch 2.13, onnxscript
    0.7.2, an extra dependency) exports this encoder, but onnxruntime's `quantize_dynamic` then
    fails shape inference on its graph ("Inferred shape and existing shape differ"), and int8 ONNX
    is the form this stage exists for.
    """
    model = copy.deepcopy(model).cpu()
    sample = tokenizer(["an example sentence", "a longer example sentence for tracing"], padding=True, return_tensors="pt")
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}, "logits": {0: "batch"}}
    torch.onnx.export(
        LogitsOnly(model).eval(),
        (sample["input_ids"], sample["attention_mask"]),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes=axes,
        opset_version=17,
        dynamo=False,
    )


def quantize_onnx(source: Path, target: Path) -> None:
    """onnxruntime dynamic int8 quantization of the graph's MatMul/Gemm weights, one scale per output channel
    (activations are quantized to uint8 on the fly). Per-channel weights keep test accuracy within the gate
    where one scale per tensor lost more than half a point, at the same speed (bench/inference.py). Tensors
    whose type shape inference cannot tell, the outputs of fused contrib ops, are float32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        per_channel=True,
        weight_type=QuantType.QInt8,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def save_onnx_config(model: SentimentClassifier, labels: list[str], out: Path) -> None:
    """config.json beside the ONNX files: the encoder's own config with the label names, which is what
    Optimum's `ORTModelForSequenceClassification.from_pretrained(out, file_name=...)` reads (the graph
    takes input_ids and attention_mask and returns logits, as that class expects)."""
    config = copy.deepcopy(model.encoder.config)
    config.id2label, config.label2id = dict(enumerate(labels)), {name: i for i, name in enumerate(labels)}
    config.architectures = None  # the graph is not the encoder's own AutoModel class
    config.save_pretrained(out)


def torch_backend(model: nn.Module, bf16: bool = False) -> Backend:
    on = next(model.parameters(), torch.empty(0)).device

    @torch.inference_mode()
    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        with torch.autocast(on.type, dtype=torch.bfloat16, enabled=bf16):
            ids, mask = torch.from_numpy(input_ids).to(on), torch.from_numpy(attention_mask).to(on)
            logits = model(input_ids=ids, attention_mask=mask).logits
        return logits.float().cpu().numpy()

    return run


def onnx_backend(path: Path, threads: int = 0, spin: bool = True) -> Backend:
    """An onnxruntime session, on CUDA where onnxruntime-gpu has it, else the CPU (threads 0: one per
    physical core, onnxruntime's default). spin False: idle worker threads sleep instead of busy-waiting
    for the next call (a server's event loop needs that core between calls)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    session = ort.InferenceSession(str(path), options, providers=providers)

    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return session.run(["logits"], {"input_ids": input_ids, "attention_mask": attention_mask})[0]

    return run


def sorted_batches(
    tokenizer, texts: list[str], max_length: int, batch_size: int
) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """(row indices, padded int64 arrays) per batch, batches of similar length so little padding."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    batches = []
    for rows in length_sorted_batches(encoded, batch_size):
        padded = tokenizer.pad({"input_ids": [encoded[i] for i in rows]}, return_tensors="np")
        batches.append((rows, {k: padded[k].astype(np.int64) for k in ("input_ids", "attention_mask")}))
    return batches


def backend_logits(run: Backend, batches: list[tuple[np.ndarray, dict[str, np.ndarray]]], n: int) -> np.ndarray:
    logits = None
    for rows, arrays in batches:
        out = run(arrays["input_ids"], arrays["attention_mask"])
        if logits is None:
            logits = np.zeros((n, out.shape[1]), dtype=np.float64)
        logits[rows] = out
    return logits


def optimize_onnx(source: Path, target: Path, config) -> None:
    """onnxruntime's transformer graph optimizations (fused attention, LayerNorm, GELU, embeddings) on
    the fp32 graph. The BERT fusions match BERT-like encoders; where a family's graph does not match
    them, the graph is kept as onnxruntime's basic optimizations leave it (still correct, less fused)."""
    from onnxruntime.transformers.optimizer import optimize_model

    heads = getattr(config, "num_attention_heads", 0) or getattr(config, "n_heads", 0)
    hidden = getattr(config, "hidden_size", 0) or getattr(config, "dim", 0)
    optimized = optimize_model(str(source), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=1)
    optimized.save_model_to_file(str(target))


def build_forms(model: SentimentClassifier, tokenizer, out: Path) -> dict[str, Backend]:
    """Write the ONNX files under `out` and return a runnable backend per form."""
    export_onnx(model, tokenizer, out / FORM_FILES["onnx"])
    quantize_onnx(out / FORM_FILES["onnx"], out / FORM_FILES["onnx_int8"])
    optimize_onnx(out / FORM_FILES["onnx"], out / "model_optimized.onnx", model.encoder.config)
    quantize_onnx(out / "model_optimized.onnx", out / FORM_FILES["onnx_optimized_int8"])
    (out / "model_optimized.onnx").unlink()  # an intermediate: the int8 file is the form served
    return {
        "torch": torch_backend(model),
        "torch_int8": torch_backend(quantize_int8(model)),
        **{form: onnx_backend(out / name) for form, name in FORM_FILES.items()},
    }


def score_forms(
    backends: dict[str, Backend], batches: list, labels: np.ndarray, sizes: dict[str, float]
) -> dict[str, dict[str, Any]]:
    """Accuracy and F1-macro per form, and each form's difference from fp32: in those, in labels, and in logits."""
    report: dict[str, dict[str, Any]] = {}
    reference = None
    for form, run in backends.items():
        logits = backend_logits(run, batches, len(labels))
        reference = logits if reference is None else reference
        preds = logits.argmax(axis=1)
        report[form] = {
            "accuracy": float((preds == labels).mean()),
            "f1_macro": f1_macro(labels, preds),
            "agreement_with_torch": float((preds == reference.argmax(axis=1)).mean()),
            "max_abs_logit_diff_vs_torch": float(np.abs(logits - reference).max()),
            "size_mb": sizes[form],
        }
    for form in backends:
        for metric in ("accuracy", "f1_macro"):
            report[form][f"{metric}_delta_vs_torch"] = report[form][metric] - report["torch"][metric]
    return report


def serialized_mb(model: nn.Module) -> float:
    """Size of the model's state dict as torch.save writes it."""
    import io

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell() / 2**20
