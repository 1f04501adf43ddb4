"""The exported forms of a trained model (sentiment.serving.forms names them): each form's builder run once per
export, and every form scored on test against torch fp32 as serving calls it: each text alone, in length-sorted
batches of each size the gate names, and among random neighbours of other lengths (partial batches included).

Speed is measured on the CPU at hand, not here (`--form auto` times the passing forms on first use;
bench/inference.py compares them side by side): timings are not reproducible and do not belong in metrics.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, PositiveInt, field_validator

from sentiment.config import Section
from sentiment.metrics import accuracy_and_f1, scale
from sentiment.models.engine import Backend, Batches, mean_per_text, padded_batches, padded_rows, run_batches
from sentiment.serving.builders import BuildInputs
from sentiment.serving.forms import FORMS, GateConfig, ServedBatchSize, gate_failures


class ExportConfig(Section):
    """params.yaml `export`."""

    forms: list[str] = Field(min_length=1)  # what the export stages build and gate (torch, the reference, always)
    batch_size: PositiveInt  # length-sorted dev batches that calibrate onnxruntime's static int8 form
    calibration_rows: PositiveInt  # dev rows (the first, in the clean split's order) whose activations set int8 ranges
    batch_sizes: list[PositiveInt] = Field(min_length=1)  # test is scored at these and at serve/predict's batch sizes
    gate: GateConfig

    @field_validator("forms")
    @classmethod
    def _known(cls, forms: list[str]) -> list[str]:
        if unknown := [f for f in forms if f not in FORMS]:
            raise ValueError(f"unknown forms {unknown} (sentiment/serving/forms.py: {sorted(FORMS)})")
        return ["torch", *dict.fromkeys(f for f in forms if f != "torch")]


def scored_batch_sizes(export: ExportConfig, served: list[ServedBatchSize]) -> list[int]:
    """Batch 1, `export.batch_sizes` and the batch sizes serve and predict use: what every form is scored at."""
    return sorted({1, *export.batch_sizes, *(s.batch_size for s in served)})


def build_forms(inputs: BuildInputs, out: Path, forms: list[str]) -> dict[str, Backend]:
    """Write each form's file under `out` (each builder runs once, sources first) and return a backend per form."""
    done: set[str] = set()

    def build(name: str) -> None:
        spec = FORMS[name]
        if name in done:
            return
        if spec.source:
            build(spec.source)
        if spec.build is not None:
            spec.build(out / spec.file, out / FORMS[spec.source].file if spec.source else None, inputs)
        done.add(name)

    for name in forms:
        build(name)
    return {name: FORMS[name].open(out, inputs.model) for name in forms}


def neighbour_batches(tokenizer: Any, sequences: list[list[int]], batch_size: int, seed: int) -> Batches:
    """The rows in a seeded random order, cut into batches of `batch_size` (the last one partial), each padded to
    its longest row: texts among neighbours of other lengths, as a server's calls mix them."""
    order = np.random.default_rng(seed).permutation(len(sequences))
    cuts = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    return [(rows, padded_rows(tokenizer, sequences, rows)) for rows in cuts]


def form_logits(
    run: Backend, tokenizer: Any, sequences: list[list[int]], batch_sizes: list[int], seed: int, owner: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Logits of every text at each batch size (length-sorted batches, as predict runs; key "<size>") and, for each
    size above 1, among seeded random neighbours (key "<size>_mixed"). `sequences` are windows, `owner` the text
    each comes from (sentiment.models.engine.windows; None: one window per text), averaged per text as predict does."""
    n, logits = len(sequences), {}
    owner = np.arange(n) if owner is None else owner
    texts = int(owner.max()) + 1 if n else 0
    for size in batch_sizes:
        ways = {str(size): padded_batches(tokenizer, sequences, size)}
        if size > 1:
            ways[f"{size}_mixed"] = neighbour_batches(tokenizer, sequences, size, seed + size)
        for way, batches in ways.items():
            logits[way] = mean_per_text(run_batches(run, batches, n), owner, texts)
    return logits


def form_figures(logits: dict[str, np.ndarray], reference: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Accuracy, F1-macro and agreement with torch fp32 labels (`reference`) in each way of calling, the worst of
    each; label changes and the largest probability change between each text alone (batch 1) and each other way."""
    by_size = {}
    for way, z in logits.items():
        preds = z.argmax(axis=1)
        by_size[way] = {**accuracy_and_f1(labels, preds, z.shape[1]), "agreement_with_torch": float((preds == reference).mean())}
    alone, alone_probs = logits["1"].argmax(axis=1), scale(logits["1"], 1.0)
    others = [way for way in logits if way != "1"]
    return {
        **{k: min(r[k] for r in by_size.values()) for k in ("accuracy", "f1_macro", "agreement_with_torch")},
        "by_batch_size": by_size,
        "label_changes_vs_batch_1": {way: int((logits[way].argmax(axis=1) != alone).sum()) for way in others},
        "max_probability_change_vs_batch_1": max(
            (float(np.abs(scale(logits[way], 1.0) - alone_probs).max()) for way in others), default=0.0
        ),
    }


def score_forms(
    backends: dict[str, Backend], tokenizer: Any, sequences: list[list[int]], labels: np.ndarray, batch_sizes: list[int],
    gate: GateConfig, owner: np.ndarray | None = None,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """export.json's figures per form (torch first, the reference): form_figures, each metric's difference from
    torch fp32 (the form's worst way of calling against torch alone), and the gate's verdict. `sequences` and
    `owner` as form_logits takes them."""
    sizes = sorted({1, *batch_sizes})
    seed = gate.neighbour_seed
    logits = {form: form_logits(run, tokenizer, sequences, sizes, seed, owner) for form, run in backends.items()}
    reference = logits["torch"]["1"].argmax(axis=1)
    report = {form: form_figures(z, reference, labels) for form, z in logits.items()}
    torch_alone = report["torch"]["by_batch_size"]["1"]
    for form, figures in report.items():
        for metric in ("accuracy", "f1_macro"):
            figures[f"{metric}_delta_vs_torch"] = figures[metric] - torch_alone[metric]
        figures["max_abs_logit_diff_vs_torch"] = max(float(np.abs(z - logits["torch"]["1"]).max()) for z in logits[form].values())
        figures["gate_failures"] = gate_failures(figures, gate)
        figures["passes_gate"] = not figures["gate_failures"]
    return report


def default_form(report: dict[str, dict[str, Any]]) -> str:
    """The served form whose figures the pipeline reports (behavior, external, the export headline): the first
    passing form `auto` may pick, in the registry's order (fastest expected first), else torch. `auto` itself
    times the passing forms on the CPU at hand."""
    return next((f for f, spec in FORMS.items() if f != "torch" and spec.auto and report.get(f, {}).get("passes_gate")), "torch")


def save_onnx_config(model: Any, labels: list[str], out: Path) -> None:
    """config.json beside the ONNX files: the encoder's own config with the label names, which is what
    Optimum's `ORTModelForSequenceClassification.from_pretrained(out, file_name=...)` reads (the graph
    takes input_ids and attention_mask and returns logits, as that class expects)."""
    config = copy.deepcopy(model.encoder.config)
    config.id2label, config.label2id = dict(enumerate(labels)), {name: i for i, name in enumerate(labels)}
    config.architectures = None  # the graph is not the encoder's own AutoModel class
    config.save_pretrained(out)


def file_mb(out: Path, form: str, model: Any) -> float:
    """A form's size: its file (an OpenVINO IR's .xml and .bin), or the torch state dict as torch.save writes it."""
    if (name := FORMS[form].file) is not None:
        files = [out / name, *([(out / name).with_suffix(".bin")] if name.endswith(".xml") else [])]
        return sum(f.stat().st_size for f in files) / 2**20
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell() / 2**20
