"""The runtimes an exported form runs on, one function per backend named in sentiment.serving.forms: ONNX Runtime
and OpenVINO (torch's is sentiment.models.engine.torch_backend). Each returns an engine Backend:
(input_ids, attention_mask) int64 arrays -> logits."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

import numpy as np

from sentiment.io import noted_read
from sentiment.models.engine import Backend

RUNTIME_PACKAGES = {"torch": "torch", "onnx": "onnxruntime", "openvino": "openvino"}


def installed(backend: str) -> bool:
    """Whether the Python package a backend runs on is importable here."""
    return importlib.util.find_spec(RUNTIME_PACKAGES[backend]) is not None


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
    noted_read(path)
    session = ort.InferenceSession(str(path), options, providers=providers)

    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return session.run(["logits"], {"input_ids": input_ids, "attention_mask": attention_mask})[0]

    return run


def openvino_backend(path: Path, precision: Literal["f32", "bf16"] = "f32") -> Backend:
    """An OpenVINO model compiled for the CPU with an explicit precision hint: on CPUs with AMX or AVX512-BF16,
    OpenVINO runs an fp32 model's (and an int8 model's remaining float) layers in bf16 unless told f32.
    One infer request, called from one thread at a time (the engine's and the server's batcher do)."""
    import openvino as ov

    noted_read(path)
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": precision})
    request = compiled.create_infer_request()
    output = compiled.output(0)

    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return np.array(request.infer({"input_ids": input_ids, "attention_mask": attention_mask})[output], copy=True)

    return run
