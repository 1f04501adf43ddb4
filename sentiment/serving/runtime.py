"""Scorers of the trained models' served forms, for every consumer (`sentiment predict`, the HTTP server, the
behavior and external stages, the benches): a form's backend from the registry, `auto`'s pick, and scorers that
run texts through the one scoring engine (sentiment.models.engine), built from the params sections the caller
validated and passes in (nothing here reads params.yaml).

A scorer turns raw texts into temperature-scaled class probabilities with the pipeline's light cleaning and
`predict`'s long-text rule; the saved baselines are scorers too, so a stage compares what users would deploy.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sentiment.config import UserError
from sentiment.data.text import Cleaning, NegationWords, TextCleaning, clean_text
from sentiment.io import model_facts, read_results, trained_model
from sentiment.metrics import scale
from sentiment.models.baselines import vader_scores
from sentiment.models.classifier import device, load_classifier
from sentiment.models.engine import Backend, Reading, score_logits
from sentiment.paths import data_dir, export_stage, results_file
from sentiment.serving.backends import RUNTIME_PACKAGES, installed
from sentiment.serving.forms import FORMS, resolve
from sentiment.serving.long_text import BatchedReading
from sentiment.serving.timing_cache import cache_entry, cached_timings


def load_backend(key: str, form: str, spin: bool = True, model: str = "finetune") -> tuple[Backend, Any]:
    """(backend, tokenizer) of one form of a dataset's trained model (sentiment.paths.MODELS)."""
    from transformers import AutoTokenizer

    spec, path = FORMS[form], trained_model(key, model)
    if spec.backend == "torch":
        loaded, tokenizer, _ = load_classifier(path)
        return spec.open(path, loaded), tokenizer
    folder, stage = data_dir(key, export_stage(model)), export_stage(model)
    if not (folder / spec.file).exists():
        raise UserError(f"no exported model at {folder / spec.file}: run `dvc repro {stage}@{key}` (or `dvc pull`) first")
    if not installed(spec.backend):
        raise UserError(f"form {form!r} runs on {RUNTIME_PACKAGES[spec.backend]}, which is not installed (pip install it)")
    return spec.open(folder, spin=spin), AutoTokenizer.from_pretrained(path)


# --- auto: the fastest passing form on the CPU at hand ----------------------------------------------

TIMED_SHAPE = (8, 32)  # (texts, tokens) of the batch each candidate form is timed on
TIMED_RUNS = 5


def measured_timings(key: str, report: Path, spin: bool, model: str = "finetune") -> Callable[[list[str]], dict[str, float]]:
    """`forms -> seconds per timed batch`: the cached figures for this machine, export and way of running
    (sentiment.serving.timing_cache), else a short timing (median of TIMED_RUNS calls on a TIMED_SHAPE batch after
    one warm-up), then cached."""

    def measure(form: str) -> float:
        run, tokenizer = load_backend(key, form, spin, model)
        ids = np.full(TIMED_SHAPE, tokenizer.cls_token_id or 0, dtype=np.int64)
        mask = np.ones(TIMED_SHAPE, dtype=np.int64)
        run(ids, mask)
        seconds = []
        for _ in range(TIMED_RUNS):
            start = time.perf_counter()
            run(ids, mask)
            seconds.append(time.perf_counter() - start)
        return float(np.median(seconds))

    def timings(forms: list[str]) -> dict[str, float]:
        digest = hashlib.sha256(report.read_bytes()).hexdigest()[:16]
        return cached_timings(cache_entry(key, model, digest, spin), forms, measure)

    return timings


def pick_form(key: str, form: str, spin: bool = True, model: str = "finetune") -> tuple[str, str]:
    """(form, why) for `form` of `model` (`auto` measured on this CPU, see sentiment.serving.forms.resolve)."""
    stage = export_stage(model)
    report = results_file(key, stage)
    gpu = form == "auto" and device().type != "cpu"
    return resolve(form, data_dir(key, stage), report, gpu, measured_timings(key, report, spin, model))


# --- scorers ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scored:
    """One model's output on some texts: logits (log-probabilities for the baselines) and labels."""

    logits: np.ndarray
    preds: np.ndarray

    def probabilities(self, temperature: float = 1.0) -> np.ndarray:
        return scale(self.logits, temperature)


@dataclass
class Scorer:
    """Raw texts -> Scored, with the temperature evaluate fitted on in-domain dev."""

    name: str
    labels: list[str]
    temperature: float
    score: Callable[[list[str]], Scored]

    def __call__(self, texts: list[str]) -> Scored:
        if not texts:
            return Scored(np.zeros((0, len(self.labels))), np.zeros(0, dtype=np.int64))
        return self.score(texts)

    def scaled(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(temperature-scaled probabilities, labels) per text: sentiment.evaluation.behavior's Score."""
        out = self(texts)
        return out.probabilities(self.temperature), out.preds


class FinetuneScorer(Scorer):
    """One form of a dataset's trained encoder (`model`: the fine-tuned one, or its distilled student) over
    length-sorted batches of `batch_size` texts (or windows),
    after the pipeline's light cleaning, long texts read as `reading` says. `meta` is the model's head.json;
    `form_reason` says why this form (`auto`'s measurement, or "asked for")."""

    def __init__(
        self,
        key: str,
        form: str,
        cleaning: Cleaning,
        reading: Reading,
        batch_size: int,
        spin: bool = True,
        name: str = "finetune",
        model: str = "finetune",
    ):
        self.model = model
        self.meta: dict[str, Any] = model_facts(key, model)
        super().__init__(name, self.meta["labels"], float(self.meta["temperature"]), self.scored)
        self.form, self.form_reason = pick_form(key, form, spin, model)
        self.run, self.tokenizer = load_backend(key, self.form, spin, model)
        self.cleaning, self.reading, self.batch_size = cleaning, reading, batch_size

    def reading_as(self, reading: Reading, name: str) -> FinetuneScorer:
        """The same loaded model under another name, reading long texts as `reading` says."""
        other = copy.copy(self)
        other.name, other.reading, other.score = name, reading, other.scored
        return other

    @property
    def max_length(self) -> int:
        return int(self.meta["max_length"])

    def logits(self, texts: list[str]) -> np.ndarray:
        """Raw logits per text (the mean over its windows when `predict.long_text` is chunk)."""
        if not texts:
            return np.zeros((0, len(self.labels)))
        cleaned = [clean_text(t, self.cleaning) for t in texts]
        return score_logits(self.run, self.tokenizer, cleaned, self.max_length, self.batch_size, self.reading)

    def scored(self, texts: list[str]) -> Scored:
        logits = self.logits(texts)
        return Scored(logits, logits.argmax(axis=1))

    def probabilities(self, texts: list[str]) -> np.ndarray:
        return scale(self.logits(texts), self.temperature) if texts else np.zeros((0, len(self.labels)))

    def answers(self, texts: list[str]) -> list[dict[str, Any]]:
        """One {label, label_id, probabilities} per text, in order."""
        return [
            {
                "label": self.labels[int(p.argmax())],
                "label_id": int(p.argmax()),
                "probabilities": dict(zip(self.labels, p.tolist(), strict=True)),
            }
            for p in self.probabilities(texts)
        ]

    def token_counts(self, texts: list[str]) -> list[int]:
        """Tokens per text after cleaning, untruncated."""
        cleaned = [clean_text(t, self.cleaning) for t in texts]
        return [len(ids) for ids in self.tokenizer(cleaned, truncation=False, verbose=False)["input_ids"]]


def evaluated(key: str) -> dict[str, Any]:
    return read_results(key, "evaluate")


def baseline_scorer(key: str, name: str, labels: list[str], clean: TextCleaning, words: NegationWords) -> Scorer:
    """`tfidf_lr` (on the baseline's normalised text) or `vader` (labels from its dev-tuned thresholds)."""
    import joblib

    path = data_dir(key, "baseline") / f"{name}.joblib"
    if not path.exists():
        raise UserError(f"no saved baseline {name!r} at {path}: run `dvc repro baseline@{key}` first")
    model = joblib.load(path)
    light = clean.light()
    temperature = float(evaluated(key)["models"][name]["temperature"])

    if name == "vader":

        def score(texts: list[str]) -> Scored:
            compound = vader_scores([clean_text(t, light) for t in texts])
            return Scored(np.log(np.clip(model.predict_proba(compound), 1e-12, 1)), model.predict(compound))

    else:
        normalize = clean.normalizer(words.negation)

        def score(texts: list[str]) -> Scored:
            probs = model.predict_proba([normalize(clean_text(t, light)) for t in texts])
            return Scored(np.log(np.clip(probs, 1e-12, 1)), probs.argmax(axis=1))

    return Scorer(name, labels, temperature, score)


def deployed_scorers(
    key: str, clean: TextCleaning, words: NegationWords, reading: BatchedReading, labels: list[str]
) -> list[Scorer]:
    """The fine-tuned model as the reference (torch fp32, named `finetune`) and as served (export's default form,
    named `finetune_<form>`, when that is not torch), each in batches of `reading.batch_size`, and the best
    baseline evaluate picked on dev."""
    served = read_results(key, "export")["default_form"]
    light = clean.light()
    scorers: list[Scorer] = [FinetuneScorer(key, form, light, reading, reading.batch_size, name=name) for form, name in
                             served_forms(served)]  # fmt: skip
    if best := evaluated(key).get("best_baseline"):
        scorers.append(baseline_scorer(key, best, labels, clean, words))
    return scorers


def served_forms(served: str) -> list[tuple[str, str]]:
    """(form, scorer name) of the reference and, when it differs, the served default form."""
    return [("torch", "finetune"), *([(served, f"finetune_{served}")] if served != "torch" else [])]
