"""The one runtime layer every consumer scores through (`sentiment predict`, the HTTP server, the behavior and
external stages, the benches): a backend per form, the one length-sorted batcher, and scorers built from the
params sections the caller validated and passes in (nothing here reads params.yaml).

A scorer turns raw texts into temperature-scaled class probabilities with the pipeline's light cleaning and
`predict`'s long-text rule; the saved baselines are scorers too, so a stage compares what users would deploy.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sentiment.config import UserError
from sentiment.data.text import CleanConfig, Cleaning, WordLists, clean_text
from sentiment.io import read_results
from sentiment.machine import machine_key
from sentiment.metrics import scale
from sentiment.paths import data_dir, export_stage, model_dir, results_file
from sentiment.serving.forms import FORMS, resolve
from sentiment.serving.long_text import PredictConfig, mean_per_text, windows

# (input_ids, attention_mask) as int64 arrays -> logits
Backend = Callable[[np.ndarray, np.ndarray], np.ndarray]
Batches = list[tuple[np.ndarray, dict[str, np.ndarray]]]


def torch_backend(model: Any, bf16: bool = False) -> Backend:
    import torch

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


def encode(tokenizer: Any, texts: list[str], max_length: int) -> list[list[int]]:
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


def batches_of(tokenizer: Any, sequences: list[list[int]], batch_size: int) -> Batches:
    """The one batcher (sentiment.models.classifier.padded_batches): length-sorted, padded int64 batches."""
    from sentiment.models.classifier import padded_batches

    return padded_batches(tokenizer, sequences, batch_size)


def run_batches(run: Backend, batches: Batches, n: int) -> np.ndarray:
    """Logits of `n` rows, each batch's rows put back in place."""
    logits = None
    for rows, arrays in batches:
        out = run(arrays["input_ids"], arrays["attention_mask"])
        if logits is None:
            logits = np.zeros((n, out.shape[1]), dtype=np.float64)
        logits[rows] = out
    return np.zeros((0, 0)) if logits is None else logits


def load_backend(key: str, form: str, spin: bool = True, model: str = "finetune") -> tuple[Backend, Any]:
    """(backend, tokenizer) of one form of a dataset's trained model (sentiment.paths.MODELS)."""
    from transformers import AutoTokenizer

    spec, path = FORMS[form], trained_model(key, model)
    if spec.backend == "torch":
        from sentiment.models.classifier import load_classifier

        model, tokenizer, _ = load_classifier(path)
        return torch_backend(model, bf16=spec.dtype == "bf16"), tokenizer
    onnx = data_dir(key, export_stage(model)) / spec.file
    if not onnx.exists():
        raise UserError(f"no exported model at {onnx}: run `dvc repro {export_stage(model)}@{key}` (or `dvc pull`) first")
    return onnx_backend(onnx, spin=spin), AutoTokenizer.from_pretrained(path)


def trained_model(key: str, model: str = "finetune") -> Path:
    path = model_dir(key, model)
    if not (path / "head.json").exists():
        raise UserError(f"no trained model {model!r} for {key!r} at {path}: run `dvc repro {model}@{key}` first")
    return path


def temperature(key: str, model: str = "finetune") -> float:
    """The temperature fitted on dev (by evaluate for the fine-tuned model, by its own stage for another), or 1.0
    when that stage has not run."""
    path = results_file(key, "evaluate" if model == "finetune" else model)
    if not path.exists():
        return 1.0
    results = json.loads(path.read_text())
    figures = results["models"].get(model, {}) if model == "finetune" else results
    return float(figures.get("temperature", 1.0))


# --- auto: the fastest passing form on the CPU at hand ----------------------------------------------

TIMED_SHAPE = (8, 32)  # (texts, tokens) of the batch each candidate form is timed on
TIMED_RUNS = 5


def timings_cache() -> Path:
    """Where `auto`'s timings are kept, one entry per CPU and export (not a pipeline output)."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "sentiment" / "auto_timings.json"


def measured_timings(key: str, report: Path, spin: bool, model: str = "finetune") -> Callable[[list[str]], dict[str, float]]:
    """`forms -> seconds per timed batch`: the cached figures for this CPU and this export, else a short timing
    (median of TIMED_RUNS calls on a TIMED_SHAPE batch after one warm-up), then cached."""

    def timings(forms: list[str]) -> dict[str, float]:
        digest = hashlib.sha256(report.read_bytes()).hexdigest()[:16]
        entry = f"{key}|{model}|{digest}|{machine_key()}"
        path = timings_cache()
        cached = json.loads(path.read_text()) if path.exists() else {}
        known = cached.get(entry, {})
        for form in (f for f in forms if f not in known):
            run, tokenizer = load_backend(key, form, spin, model)
            ids = np.full(TIMED_SHAPE, tokenizer.cls_token_id or 0, dtype=np.int64)
            mask = np.ones(TIMED_SHAPE, dtype=np.int64)
            run(ids, mask)
            seconds = []
            for _ in range(TIMED_RUNS):
                start = time.perf_counter()
                run(ids, mask)
                seconds.append(time.perf_counter() - start)
            known[form] = float(np.median(seconds))
        cached[entry] = known
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cached, indent=1, sort_keys=True) + "\n")
        return {f: known[f] for f in forms}

    return timings


def pick_form(key: str, form: str, spin: bool = True, model: str = "finetune") -> tuple[str, str]:
    """(form, why) for `form` of `model` (`auto` measured on this CPU, see sentiment.serving.forms.resolve)."""
    from sentiment.models.classifier import device

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
        reading: PredictConfig,
        batch_size: int,
        spin: bool = True,
        name: str = "finetune",
        model: str = "finetune",
    ):
        self.model = model
        self.meta: dict[str, Any] = json.loads((trained_model(key, model) / "head.json").read_text())
        super().__init__(name, self.meta["labels"], temperature(key, model), self.scored)
        self.form, self.form_reason = pick_form(key, form, spin, model)
        self.run, self.tokenizer = load_backend(key, self.form, spin, model)
        self.cleaning, self.reading, self.batch_size = cleaning, reading, batch_size

    def reading_as(self, reading: PredictConfig, name: str) -> FinetuneScorer:
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
        ids, owner = windows(self.tokenizer, cleaned, self.max_length, self.reading)
        window_logits = run_batches(self.run, batches_of(self.tokenizer, ids, self.batch_size), len(ids))
        return mean_per_text(window_logits, owner, len(texts))

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


def baseline_scorer(key: str, name: str, labels: list[str], clean: CleanConfig, words: WordLists) -> Scorer:
    """`tfidf_lr` (on the baseline's normalised text) or `vader` (labels from its dev-tuned thresholds)."""
    import joblib

    from sentiment.models.baselines import vader_scores

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
    key: str, form: str, clean: CleanConfig, words: WordLists, reading: PredictConfig, labels: list[str]
) -> list[Scorer]:
    """The fine-tuned model (scored in batches of `reading.batch_size`) and the best baseline evaluate picked on dev."""
    scorers: list[Scorer] = [FinetuneScorer(key, form, clean.light(), reading, reading.batch_size)]
    if best := evaluated(key).get("best_baseline"):
        scorers.append(baseline_scorer(key, best, labels, clean, words))
    return scorers
