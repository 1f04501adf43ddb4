"""Metric functions on arrays: classification, ranking, calibration, uncertainty, comparison."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import stats
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    classification_report,
    confusion_matrix,
    f1_score,
    log_loss,
    matthews_corrcoef,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)


def f1_macro(labels: np.ndarray, preds: np.ndarray, n_classes: int) -> float:
    """Macro-averaged F1 over the label list (classes 0..n_classes-1); a class neither in `labels` nor in `preds`
    scores 0, as every F1-macro of the pipeline counts it."""
    return float(f1_score(labels, preds, labels=range(n_classes), average="macro", zero_division=0))


def accuracy(labels: np.ndarray, preds: np.ndarray) -> float:
    return float(np.mean(np.asarray(labels) == np.asarray(preds)))


def accuracy_and_f1(labels: np.ndarray, preds: np.ndarray, n_classes: int) -> dict[str, float]:
    """The two headline figures of a set of predictions: accuracy and F1-macro over the label list."""
    return {"accuracy": accuracy(labels, preds), "f1_macro": f1_macro(labels, preds, n_classes)}


def classification(labels: np.ndarray, preds: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Accuracy, per-class and macro precision/recall/F1, MCC, confusion matrix."""
    report = classification_report(labels, preds, labels=range(len(names)), target_names=names, output_dict=True, zero_division=0)
    out = {
        "accuracy": accuracy_score(labels, preds),
        "f1_macro": f1_macro(labels, preds, len(names)),
        "precision_macro": report["macro avg"]["precision"],
        "recall_macro": report["macro avg"]["recall"],
        "mcc": matthews_corrcoef(labels, preds),
        "per_class": {
            n: {
                "precision": report[n]["precision"],
                "recall": report[n]["recall"],
                "f1": report[n]["f1-score"],
                "support": int(report[n]["support"]),
            }
            for n in names
        },
        "confusion": confusion_matrix(labels, preds, labels=range(len(names))).tolist(),
    }
    if len(names) == 2:
        out["f1_positive"] = report[names[1]]["f1-score"]
    return out


def ranking(labels: np.ndarray, probs: np.ndarray, names: list[str]) -> dict[str, Any]:
    """ROC-AUC and PR-AUC (average precision) per class, one-vs-rest; null with a reason if undefined."""
    roc, pr = {}, {}
    for k, name in enumerate(names):
        positive = labels == k
        if positive.all() or not positive.any():
            reason = f"undefined: class {name!r} {'is the only class' if positive.all() else 'is absent'} in this split"
            roc[name] = pr[name] = None
            roc[f"{name}_note"] = pr[f"{name}_note"] = reason
            continue
        roc[name] = roc_auc_score(positive, probs[:, k])
        pr[name] = average_precision_score(positive, probs[:, k])
    defined = [v for v in roc.values() if isinstance(v, float)]
    return {"roc_auc": roc, "pr_auc": pr, "roc_auc_macro": float(np.mean(defined)) if defined else None}


def curve_points(labels: np.ndarray, probs: np.ndarray, k: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """ROC (fpr, tpr) and PR (recall, precision) points for class k vs rest."""
    positive = labels == k
    fpr, tpr, _ = roc_curve(positive, probs[:, k])
    precision, recall, _ = precision_recall_curve(positive, probs[:, k])
    return {"fpr": fpr, "tpr": tpr}, {"recall": recall, "precision": precision}


# --- calibration ------------------------------------------------------------------------


def reliability(labels: np.ndarray, probs: np.ndarray, n_bins: int) -> dict[str, np.ndarray]:
    """Top-label reliability data over equal-width confidence bins (empty bins dropped).

    scikit-learn's calibration_curve is per class (binary); ECE is defined on the top-label
    confidence, so the binning is done here.
    """
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    used = counts > 0
    return {
        "bin": np.arange(n_bins)[used],
        "confidence": conf_sum[used] / counts[used],
        "accuracy": acc_sum[used] / counts[used],
        "count": counts[used],
    }


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, n_bins: int) -> float:
    """ECE: bin-size-weighted mean |accuracy - confidence| over equal-width top-label bins."""
    r = reliability(labels, probs, n_bins)
    return float(np.sum(r["count"] * np.abs(r["accuracy"] - r["confidence"])) / len(labels))


def brier(labels: np.ndarray, probs: np.ndarray) -> float:
    """Brier score summed over classes (Brier 1950): mean squared distance to the one-hot label.

    Written out because scikit-learn's brier_score_loss scores only the positive class for two
    columns, which would make binary and 3-class figures incomparable.
    """
    onehot = np.eye(probs.shape[1])[labels]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def calibration(labels: np.ndarray, probs: np.ndarray, n_bins: int) -> dict[str, float]:
    return {
        "ece": expected_calibration_error(labels, probs, n_bins),
        "brier": brier(labels, probs),
        "nll": log_loss(labels, np.clip(probs, 1e-12, 1), labels=range(probs.shape[1])),
    }


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T > 0 minimising the NLL of softmax(logits / T) (Guo et al. 2017)."""

    def nll(log_t: float) -> float:
        logp = log_softmax(logits / np.exp(log_t), axis=1)
        return -float(np.mean(logp[np.arange(len(labels)), labels]))

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-6})
    return float(np.exp(result.x))


def scale(logits: np.ndarray, temperature: float) -> np.ndarray:
    return softmax(logits / temperature, axis=1)


# --- uncertainty and comparison ---------------------------------------------------------------


def accuracy_of_resamples(labels: np.ndarray, preds: np.ndarray, n_classes: int, axis: int = -1) -> np.ndarray:
    """Accuracy of each row of (resamples, n) label and prediction arrays."""
    return np.mean(labels == preds, axis=axis)


def f1_macro_of_resamples(labels: np.ndarray, preds: np.ndarray, n_classes: int, axis: int = -1) -> np.ndarray:
    """`f1_macro` of each row of (resamples, n) arrays at once, as sklearn computes it per call.

    sklearn scores one sample per call (about 1 ms each), so a 1,000-resample bootstrap over many
    slices spends most of its time in argument checks; this gives scipy's vectorised bootstrap
    the same figure (F1 = 2 tp / (true + predicted) per class of the label list, 0 for a class in
    neither, averaged; tests/test_metrics.py checks it against sklearn).
    """
    scores = 0.0
    for label in range(n_classes):
        is_true, is_pred = labels == label, preds == label
        counted = is_true.sum(axis=axis) + is_pred.sum(axis=axis)
        scores = scores + np.where(counted > 0, 2 * (is_true & is_pred).sum(axis=axis) / np.maximum(counted, 1), 0.0)
    return scores / n_classes


BOOTSTRAP_STATISTICS: dict[str, Callable[..., np.ndarray]] = {
    "accuracy": accuracy_of_resamples,
    "f1_macro": f1_macro_of_resamples,
}


def bootstrap_interval(
    labels: np.ndarray,
    preds: np.ndarray,
    metric: str,
    n_classes: int,
    n_resamples: int,
    seed: int,
    level: float = 0.95,
) -> list[float]:
    """Percentile bootstrap interval of `metric` ("accuracy" or "f1_macro" over the label list) over resampled
    rows (seeded)."""
    statistic = BOOTSTRAP_STATISTICS[metric]
    result = stats.bootstrap(
        (labels, preds),
        lambda y, p, axis=-1: statistic(y, p, n_classes, axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=n_resamples,
        confidence_level=level,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def mcnemar_exact(labels: np.ndarray, preds_a: np.ndarray, preds_b: np.ndarray) -> dict[str, Any]:
    """Exact McNemar test: a binomial test on the discordant pairs."""
    a_only = int(np.sum((preds_a == labels) & (preds_b != labels)))
    b_only = int(np.sum((preds_a != labels) & (preds_b == labels)))
    n = a_only + b_only
    p_value = 1.0 if n == 0 else float(stats.binomtest(a_only, n, 0.5).pvalue)
    return {"a_right_b_wrong": a_only, "a_wrong_b_right": b_only, "p_value": p_value}
