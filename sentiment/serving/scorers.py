"""The models a user would deploy, as functions of raw text: the fine-tuned model (one exported form,
`predict`'s long-text rule) and the saved baselines, each with the temperature evaluate fitted on dev.

Stages that test models on text from outside the pipeline (behavior, external) score through these,
so they see exactly what `sentiment predict` and `sentiment serve` would answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import joblib
import numpy as np

from sentiment.config import UserError, section
from sentiment.data.text import CleanConfig, WordLists, clean_text
from sentiment.io import read_json
from sentiment.metrics import scale
from sentiment.paths import data_dir, metrics_file
from sentiment.serving.forms import Form
from sentiment.serving.long_text import PredictConfig
from sentiment.serving.predictor import Predictor


@dataclass(frozen=True)
class Scored:
    """One model's output on some texts: logits (log-probabilities for the baselines) and labels."""

    logits: np.ndarray
    preds: np.ndarray

    def probabilities(self, temperature: float = 1.0) -> np.ndarray:
        return scale(self.logits, temperature)


@dataclass(frozen=True)
class Scorer:
    name: str
    labels: list[str]
    temperature: float  # fitted on in-domain dev by evaluate
    score: Callable[[list[str]], Scored]
    max_length: int | None = None  # transformers: tokens per window
    token_counts: Callable[[list[str]], list[int]] | None = None  # transformers: tokens per text, untruncated

    def __call__(self, texts: list[str]) -> Scored:
        if not texts:
            return Scored(np.zeros((0, len(self.labels))), np.zeros(0, dtype=np.int64))
        return self.score(texts)


def evaluated(key: str) -> dict[str, Any]:
    return read_json(metrics_file(key, "evaluate"), f"evaluate@{key}")


def finetune_scorer(key: str, form: Form, reading: PredictConfig, batch_size: int = 64, name: str = "finetune") -> Scorer:
    predictor = Predictor(key, form, batch_size, reading)

    def score(texts: list[str]) -> Scored:
        logits = predictor.logits(texts)
        return Scored(logits, logits.argmax(axis=1))

    def token_counts(texts: list[str]) -> list[int]:
        cleaned = [clean_text(t, predictor.cleaning) for t in texts]
        return [len(ids) for ids in predictor.tokenizer(cleaned, truncation=False, verbose=False)["input_ids"]]

    return Scorer(name, predictor.labels, predictor.temperature, score, predictor.meta["max_length"], token_counts)


def baseline_scorer(key: str, name: str, params: dict[str, Any], labels: list[str]) -> Scorer:
    """`tfidf_lr` (on the baseline's normalised text) or `vader` (labels from its dev-tuned thresholds)."""
    from sentiment.models.baselines import vader_scores

    path = data_dir(key, "baseline") / f"{name}.joblib"
    if not path.exists():
        raise UserError(f"no saved baseline {name!r} at {path}: run `dvc repro baseline@{key}` first")
    model = joblib.load(path)
    clean = section(CleanConfig, params, "clean")
    light = clean.light()
    temperature = float(evaluated(key)["models"][name]["temperature"])

    if name == "vader":

        def score(texts: list[str]) -> Scored:
            compound = vader_scores([clean_text(t, light) for t in texts])
            return Scored(np.log(np.clip(model.predict_proba(compound), 1e-12, 1)), model.predict(compound))

    else:
        normalize = clean.normalizer(section(WordLists, params, "words").negation)

        def score(texts: list[str]) -> Scored:
            probs = model.predict_proba([normalize(clean_text(t, light)) for t in texts])
            return Scored(np.log(np.clip(probs, 1e-12, 1)), probs.argmax(axis=1))

    return Scorer(name, labels, temperature, score)


def deployed_scorers(key: str, params: dict[str, Any], labels: list[str], form: Form) -> list[Scorer]:
    """The fine-tuned model and the best baseline (the one evaluate picked on dev)."""
    reading = section(PredictConfig, params, "predict")
    best = evaluated(key).get("best_baseline")
    scorers = [finetune_scorer(key, form, reading)]
    if best:
        scorers.append(baseline_scorer(key, best, params, labels))
    return scorers
