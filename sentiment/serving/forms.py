"""The trained models' forms: ONE registry (name -> file, builder, backend) from which the export stages,
`sentiment predict/serve --form`, the behavior/external stages, bench/inference.py and the model-registry
artifacts all take their lists; the gate a form must pass to be served; and the rule `--form auto` follows.

Adding a form: an entry in FORMS here, and its builder in sentiment/serving/builders.py when it has a file.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, PositiveInt

from sentiment.config import Section
from sentiment.models.engine import Backend, torch_backend
from sentiment.serving import builders
from sentiment.serving.backends import RUNTIME_PACKAGES, installed, onnx_backend, openvino_backend

Builder = Callable[[Path, "Path | None", builders.BuildInputs], None]


@dataclass(frozen=True)
class FormSpec:
    name: str
    description: str  # for the model-registry artifact and the README
    backend: Literal["torch", "onnx", "openvino"]
    dtype: Literal["fp32", "bf16", "int8"]  # what its matrix products run in (bf16: torch autocast, OpenVINO's hint)
    file: str | None = None  # under data/<key>/<export stage>/; None: the trained checkpoint itself
    build: Builder | None = None  # writes `file` (None: the file is the `source` form's)
    source: str | None = None  # the form whose file `build` reads (None: the torch model)
    auto: bool = True  # whether `auto` may pick it: False for a form whose answer depends on its batch

    def open(self, folder: Path, model: Any = None, spin: bool = True) -> Backend:
        """This form's backend: torch's over the loaded `model`, else its file under `folder`."""
        if self.backend == "torch":
            return torch_backend(model, bf16=self.dtype == "bf16")
        if self.backend == "onnx":
            return onnx_backend(folder / self.file, spin=spin)
        return openvino_backend(folder / self.file, "bf16" if self.dtype == "bf16" else "f32")


# torch first (the reference); then the forms `auto` may pick, fastest expected first (export's default_form)
FORMS: dict[str, FormSpec] = {
    spec.name: spec
    for spec in (
        FormSpec("torch", "the trained checkpoint, fp32 (the reference every other form is gated against)", "torch", "fp32"),
        FormSpec(
            "torch_bf16",
            "the trained checkpoint under bf16 autocast (fast on AVX512-BF16 or AMX; its probabilities move with the batch)",
            "torch",
            "bf16",
            auto=False,
        ),
        FormSpec(
            "openvino_int8",
            "int8 OpenVINO IR from NNCF post-training quantization (transformer preset, ranges calibrated on dev), f32 hint",
            "openvino",
            "int8",
            "openvino_int8.xml",
            builders.openvino_int8,
            source="onnx",
        ),
        FormSpec(
            "openvino_int8_ffn_fp32",
            "openvino_int8 with each layer's feed-forward output projection kept fp32 (for models plain int8 moves)",
            "openvino",
            "int8",
            "openvino_int8_ffn_fp32.xml",
            builders.openvino_int8_ffn_fp32,
            source="onnx",
        ),
        FormSpec(
            "onnx_int8_static",
            "int8, static (QDQ, uint8 activations with ranges calibrated on dev, int8 per-channel weights)",
            "onnx",
            "int8",
            "model_int8_static.onnx",
            builders.quantize_static_int8,
            source="onnx",
        ),
        FormSpec(
            "openvino",
            "fp32 OpenVINO IR, compiled with the f32 precision hint",
            "openvino",
            "fp32",
            "openvino_fp32.xml",
            builders.openvino_ir,
            source="onnx",
        ),
        FormSpec("onnx", "fp32 graph for onnxruntime", "onnx", "fp32", "model.onnx", builders.export_onnx),
        FormSpec(
            "openvino_bf16",
            "the fp32 OpenVINO IR compiled with the bf16 precision hint (AMX/AVX512-BF16; its probabilities move)",
            "openvino",
            "bf16",
            "openvino_fp32.xml",
            source="openvino",
            auto=False,
        ),
        FormSpec(
            "onnx_int8_dynamic",
            "int8, dynamic (activations quantized per batch: a label can depend on its batch; never picked by auto)",
            "onnx",
            "int8",
            "model_int8_dynamic.onnx",
            builders.quantize_dynamic_int8,
            source="onnx",
            auto=False,
        ),
    )
}

FORM_CHOICES = ("auto", *FORMS)  # what `sentiment predict/serve --form` accepts
Form = Literal[FORM_CHOICES]  # type: ignore[valid-type]
Timings = Callable[[list[str]], dict[str, float]]


class GateConfig(Section):
    """params.yaml `export.gate`: what a form must keep against torch fp32 on test to be served."""

    max_metric_loss: float = Field(ge=0, le=1)  # accuracy and F1-macro, at every batch size scored
    min_agreement: float = Field(ge=0, le=1)  # share of test labels equal to torch fp32's
    max_label_changes: int = Field(ge=0)  # test labels that differ between a text scored alone and in any batch
    max_probability_change: float = Field(ge=0)  # the largest change of a test probability between those
    neighbour_seed: int = Field(ge=0)  # seeds the random neighbours each text is also scored among


class ServedBatchSize(Section):
    """The `batch_size` of params.yaml `serve` or `predict`, read without the rest of the section."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    batch_size: PositiveInt


def gate_failures(figures: dict[str, Any], gate: GateConfig) -> list[str]:
    """Why a form's export figures fail the gate (empty: it passes)."""
    failures = []
    for metric in ("accuracy", "f1_macro"):
        if figures[f"{metric}_delta_vs_torch"] < -gate.max_metric_loss - 1e-12:
            failures.append(f"{metric} {figures[f'{metric}_delta_vs_torch']:+.4f} vs torch")
    if figures["agreement_with_torch"] < gate.min_agreement:
        failures.append(f"agreement with torch {figures['agreement_with_torch']:.4f} < {gate.min_agreement}")
    changes = max(figures["label_changes_vs_batch_1"].values(), default=0)
    if changes > gate.max_label_changes:
        failures.append(f"{changes} labels change with the batch or its neighbours")
    if (moved := figures["max_probability_change_vs_batch_1"]) > gate.max_probability_change:
        failures.append(f"probabilities move by up to {moved:.2g} with the batch or its neighbours")
    return failures


def notice(message: str) -> None:
    print(message, file=sys.stderr)


def file_of(form: str) -> str:
    spec = FORMS[form]
    if spec.file is None:
        raise ValueError(f"form {form!r} has no exported file")
    return spec.file


def resolve(form: str, export_dir: Path, export_report: Path, gpu: bool, timings: Timings | None = None) -> tuple[str, str]:
    """(form, why); a named form is itself. `auto`: torch on a GPU or without an export report; else the fastest
    on this CPU (`timings(forms)`: seconds per form, measured or cached) of torch and the forms auto may pick whose
    figures pass the gate; a passing form whose file is missing is left out with a one-line notice on stderr."""
    if form != "auto":
        return form, "asked for"
    if gpu:
        return "torch", "auto: a GPU is present"
    if not export_report.exists():
        return "torch", f"auto: no {export_report} (the export stage has not run)"
    figures = json.loads(export_report.read_text())["forms"]
    passing = [f for f, spec in FORMS.items() if f == "torch" or (spec.auto and figures.get(f, {}).get("passes_gate"))]
    if absent := [f for f in passing if not installed(FORMS[f].backend)]:
        packages = sorted({RUNTIME_PACKAGES[FORMS[f].backend] for f in absent})
        notice(f"notice: auto leaves out {', '.join(absent)}: {', '.join(packages)} not installed")
    usable = [f for f in passing if f not in absent]
    present = [f for f in usable if FORMS[f].file is None or (export_dir / FORMS[f].file).exists()]
    if missing := [f for f in usable if f not in present]:
        files = ", ".join(str(export_dir / file_of(f)) for f in missing)
        notice(f"notice: auto leaves out {', '.join(missing)}: {files} missing (`dvc pull` fetches the export)")
    if present == ["torch"]:
        return "torch", "auto: no exported form that passes export's gate is present"
    seconds = timings(present) if timings else dict.fromkeys(present, 0.0)
    fastest = min(present, key=lambda f: (seconds[f], present.index(f)))
    measured = ", ".join(f"{f} {seconds[f] * 1000:.1f} ms" for f in present)
    return fastest, f"auto: the fastest on this CPU of the forms that pass export's gate ({measured} per timed batch)"
