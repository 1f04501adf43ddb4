"""Batch prediction with one exported form of a dataset's fine-tuned model: the pipeline's cleaning,
long texts read as `predict` says, and the temperature fitted on dev. `sentiment predict`, the HTTP
server and the behavior/external stages all score through `Predictor`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from sentiment.config import UserError, load_params, section
from sentiment.data.text import CleanConfig, Cleaning, clean_text
from sentiment.metrics import scale
from sentiment.paths import data_dir, metrics_file, model_dir
from sentiment.serving.forms import FORM_FILES, Form, resolve
from sentiment.serving.long_text import PredictConfig, mean_per_text, window_batches, windows


def trained_model(key: str) -> Path:
    path = model_dir(key)
    if not (path / "head.json").exists():
        raise UserError(f"no trained model for {key!r} at {path}: run `dvc repro finetune@{key}` first")
    return path


def temperature(key: str) -> float:
    """The temperature evaluate fitted on dev, or 1.0 when evaluate has not run."""
    path = metrics_file(key, "evaluate")
    if not path.exists():
        return 1.0
    return float(json.loads(path.read_text())["models"].get("finetune", {}).get("temperature", 1.0))


def clean_config() -> Cleaning:
    """The pipeline's light cleaning (params.yaml `clean`), or the defaults outside a checkout."""
    try:
        return section(CleanConfig, load_params(), "clean").light()
    except UserError:
        return Cleaning()


def predict_config() -> PredictConfig:
    """params.yaml `predict` (long texts: truncate or windows), or its defaults outside a checkout."""
    try:
        return section(PredictConfig, load_params(), "predict")
    except UserError as err:
        if str(err).startswith("invalid param"):
            raise
        return PredictConfig()


class Predictor:
    """Texts -> temperature-scaled class probabilities with one form of a dataset's fine-tuned model,
    over length-sorted batches; the pipeline's cleaning, and long texts read as `predict` says
    (truncated to the model's max_length, or scored in overlapping windows)."""

    def __init__(
        self, key: str, form: Form = "auto", batch_size: int = 64, reading: PredictConfig | None = None, spin: bool = True
    ):
        from transformers import AutoTokenizer

        from sentiment.models.classifier import device, load_classifier
        from sentiment.serving.export import onnx_backend, torch_backend

        path = trained_model(key)
        self.meta = json.loads((path / "head.json").read_text())
        self.labels: list[str] = self.meta["labels"]
        form, self.form_reason = resolve(key, form, gpu=device().type != "cpu")
        self.form, self.batch_size = form, batch_size
        if form == "torch":
            model, self.tokenizer, _ = load_classifier(path)
            self.run = torch_backend(model)
        else:
            onnx = data_dir(key, "export") / FORM_FILES[form]
            if not onnx.exists():
                raise UserError(f"no exported model at {onnx}: run `dvc repro export@{key}` first")
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.run = onnx_backend(onnx, spin=spin)
        self.temperature = temperature(key)
        self.cleaning = clean_config()
        self.reading = reading or predict_config()

    def logits(self, texts: list[str]) -> np.ndarray:
        """Raw logits per text (the mean over its windows when `predict.long_text` is chunk)."""
        from sentiment.serving.export import backend_logits

        if not texts:
            return np.zeros((0, len(self.labels)))
        cleaned = [clean_text(t, self.cleaning) for t in texts]
        ids, owner = windows(self.tokenizer, cleaned, self.meta["max_length"], self.reading)
        window_logits = backend_logits(self.run, window_batches(self.tokenizer, ids, self.batch_size), len(ids))
        return mean_per_text(window_logits, owner, len(texts))

    def probabilities(self, texts: list[str]) -> np.ndarray:
        return scale(self.logits(texts), self.temperature)

    def answers(self, texts: list[str]) -> list[dict[str, Any]]:
        """One {label, label_id, probabilities} per text, in order."""
        probs = self.probabilities(texts) if texts else np.zeros((0, len(self.labels)))
        return [
            {
                "label": self.labels[int(p.argmax())],
                "label_id": int(p.argmax()),
                "probabilities": dict(zip(self.labels, p.tolist(), strict=True)),
            }
            for p in probs
        ]
