"""The fine-tuned model's exported forms, by the names the export stage, `sentiment predict/serve --form`
and the behavior/external stages all use, and the rule `--form auto` follows."""

from __future__ import annotations

import json
from typing import Literal

from sentiment.paths import metrics_file

# the export stage's ONNX files by form name (data/<key>/export/<file>)
FORM_FILES = {"onnx": "model.onnx", "onnx_int8": "model_int8.onnx", "onnx_optimized_int8": "model_optimized_int8.onnx"}

# the forms that answer requests (torch_int8 is scored by export, not served: slower than ONNX int8)
Form = Literal["auto", "onnx_int8", "onnx_optimized_int8", "onnx", "torch"]

GATE = 0.005  # an exported form may lose at most half a point of test accuracy and of F1-macro against torch fp32

# the served forms, fastest first on a CPU: the ONNX int8 forms lead on the CPUs measured
# (docs/results/inference_*.json; the plain and the optimized graph trade places within run-to-run noise);
# on a GPU the torch model is the fast one
CPU_ORDER = ("onnx_int8", "onnx_optimized_int8", "onnx", "torch")


def passes_gate(scores: dict[str, float]) -> bool:
    """Whether a form's export scores lose at most GATE of accuracy and F1-macro against torch fp32."""
    return min(scores["accuracy_delta_vs_torch"], scores["f1_macro_delta_vs_torch"]) >= -GATE - 1e-12


def resolve(key: str, form: Form, gpu: bool = False) -> tuple[str, str]:
    """(form, why): `auto` becomes the fastest form that passes the gate in metrics/<key>/export.json."""
    if form != "auto":
        return form, "asked for"
    if gpu:
        return "torch", "auto: a GPU is present"
    path = metrics_file(key, "export")
    if not path.exists():
        return "torch", f"auto: no {path} (export@{key} has not run)"
    scores = json.loads(path.read_text())["forms"]
    gated = [f for f in CPU_ORDER if f == "torch" or (f in scores and passes_gate(scores[f]))]
    return gated[0], f"auto: the fastest form on a CPU within {GATE * 100:.1f} points of torch fp32 on test"
