"""Evaluation of every model from the shared predictions format: metrics, curves, calibration
(temperature scaling fitted on dev) and bootstrap intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field, field_validator

from sentiment.config import Section
from sentiment.data.datasets import logit_columns, prob_columns
from sentiment.io import pyplot, save_figure, write_csv
from sentiment.metrics import (
    bootstrap_interval,
    calibration,
    classification,
    curve_points,
    fit_temperature,
    ranking,
    reliability,
    scale,
)
from sentiment.paths import HELD_OUT, PRIMARY


class Scoring(Section):
    """params.yaml `evaluate`'s calibration bins and bootstrap resamples, read without its model list (distill
    scores its student as evaluate scores the teacher)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    ece_bins: int = Field(ge=2, le=1000)
    bootstrap_resamples: int = Field(ge=1000, le=10**6)


class EvaluatedModels(Section):
    """params.yaml `evaluate.models`, read without the rest (slices scores the same models)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    models: dict[str, str]  # model name -> the stage whose out dir holds its predictions

    @field_validator("models")
    @classmethod
    def _lists_primary(cls, models: dict[str, str]) -> dict[str, str]:
        if PRIMARY not in models:
            raise ValueError(f"it must list {PRIMARY!r}")
        return models


class EvaluateConfig(Scoring, EvaluatedModels):
    """params.yaml `evaluate`."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def logits_of(frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    """Raw logits where the model wrote them, else log-probabilities (softmax-equivalent)."""
    if all(c in frame.columns for c in logit_columns(names)):
        return frame[logit_columns(names)].to_numpy()
    return np.log(np.clip(frame[prob_columns(names)].to_numpy(), 1e-12, 1))


def evaluate_model(
    frames: dict[str, pd.DataFrame], names: list[str], cfg: Scoring, seed: int, temperature: float | None = None
) -> dict[str, Any]:
    """All figures for one model on dev and test; the temperature (the one the model folder carries, which serving
    applies, else fitted here on dev logits) applied to both."""
    if temperature is None:
        temperature = fit_temperature(logits_of(frames["dev"], names), frames["dev"]["label"].to_numpy())
    out: dict[str, Any] = {"temperature": temperature}
    for split, frame in frames.items():
        labels, preds = frame["label"].to_numpy(), frame["pred"].to_numpy()
        probs = frame[prob_columns(names)].to_numpy()
        figures = classification(labels, preds, names)
        figures.update(ranking(labels, probs, names))
        figures["calibration"] = calibration(labels, probs, cfg.ece_bins)
        figures["calibration_scaled"] = calibration(labels, scale(logits_of(frame, names), temperature), cfg.ece_bins)
        if split == "test":
            k, n, s = len(names), cfg.bootstrap_resamples, seed
            figures["ci95"] = {metric: bootstrap_interval(labels, preds, metric, k, n, s) for metric in ("accuracy", "f1_macro")}
        out[split] = figures
    return out


def comparison_table(results: dict[str, Any]) -> pd.DataFrame:
    """The baseline-vs-finetune and dev-vs-test table."""
    rows = []
    for model, r in results.items():
        for split in HELD_OUT:
            f = r[split]
            rows.append(
                {
                    "model": model,
                    "split": split,
                    "accuracy": f["accuracy"],
                    "f1_macro": f["f1_macro"],
                    "mcc": f["mcc"],
                    "roc_auc_macro": f["roc_auc_macro"],
                    "ece": f["calibration"]["ece"],
                    "ece_scaled": f["calibration_scaled"]["ece"],
                }
            )
    return pd.DataFrame(rows)


def write_figures(
    out: Path,
    labels: np.ndarray,
    probs: np.ndarray,
    scaled: np.ndarray,
    preds: np.ndarray,
    names: list[str],
    bins: int,
    title: str,
) -> None:
    """PNG versions of the charts for readers who do not run `dvc plots`."""
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ConfusionMatrixDisplay.from_predictions(labels, preds, display_labels=names, ax=ax, colorbar=False)
    ax.set_title(f"{title}: confusion (test)")
    fig.tight_layout()
    save_figure(fig, out / "confusion.png")

    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(9, 4))
    for k, name in enumerate(names):
        if (labels == k).all() or not (labels == k).any():
            continue
        roc, pr = curve_points(labels, probs, k)
        roc_ax.plot(roc["fpr"], roc["tpr"], label=name)
        pr_ax.plot(pr["recall"], pr["precision"], label=name)
    roc_ax.plot([0, 1], [0, 1], ls=":", c="grey")
    roc_ax.set(title=f"{title}: ROC (test, one-vs-rest)", xlabel="false positive rate", ylabel="true positive rate")
    pr_ax.set(title=f"{title}: precision-recall (test)", xlabel="recall", ylabel="precision")
    roc_ax.legend()
    pr_ax.legend()
    fig.tight_layout()
    save_figure(fig, out / "roc_pr.png")

    fig, ax = plt.subplots(figsize=(4.5, 4))
    for p, label in ((probs, "before"), (scaled, "after temperature scaling")):
        r = reliability(labels, p, bins)
        ax.plot(r["confidence"], r["accuracy"], marker="o", label=label)
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(title=f"{title}: reliability (test)", xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    ax.legend()
    fig.tight_layout()
    save_figure(fig, out / "reliability.png")


def write_curves(out: Path, labels: np.ndarray, frame: pd.DataFrame, scaled: np.ndarray, names: list[str], bins: int) -> None:
    """The primary model's chart data on test: confusion pairs, ROC/PR per class, reliability before/after scaling."""
    probs = frame[prob_columns(names)].to_numpy()
    write_csv(
        pd.DataFrame({"actual": [names[i] for i in labels], "predicted": [names[i] for i in frame["pred"]]}),
        out / "confusion.csv",
    )
    for k, name in enumerate(names):
        if (labels == k).any() and not (labels == k).all():
            roc, pr = curve_points(labels, probs, k)
            write_csv(pd.DataFrame(roc), out / f"roc_{name}.csv")
            write_csv(pd.DataFrame(pr), out / f"pr_{name}.csv")
    for p, tag in ((probs, "before"), (scaled, "after")):
        write_csv(pd.DataFrame(reliability(labels, p, bins)), out / f"calibration_{tag}.csv")


def analysis_table(test: pd.DataFrame, frame: pd.DataFrame, scaled: np.ndarray, names: list[str]) -> pd.DataFrame:
    """The reference run's per-sentence analysis: text, label, prediction, raw and scaled confidence, correct."""
    labels = test["label"].to_numpy()
    return pd.DataFrame(
        {
            "id": test["id"],
            "text": test["text"],
            "label": [names[i] for i in labels],
            "pred": [names[i] for i in frame["pred"]],
            "confidence": frame[prob_columns(names)].to_numpy().max(axis=1),
            "confidence_scaled": scaled.max(axis=1),
            "correct": labels == frame["pred"],
        }
    )
