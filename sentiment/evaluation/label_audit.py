"""Audit of labels by confident learning (cleanlab), from out-of-fold class probabilities
(`baselines.out_of_fold_probs`, `training.out_of_fold_probs`): the rows cleanlab ranks as likely label
errors, the estimated joint of given and true labels, and how well the audit finds labels flipped on
purpose (precision and recall against a seeded injection)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, PositiveInt

from sentiment.config import Section, UserError

# cleanlab is imported where it is used: its package import loads Datalab and `datasets` (over a second),
# which the evaluate stage, reading only `LabelIssuesConfig`, has no use for.
FilterBy = Literal["prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given"]


class LabelIssuesConfig(Section):
    """params.yaml `label_issues`."""

    model: Literal["tfidf", "encoder"] = "tfidf"  # where the out-of-fold probabilities come from
    folds: int = Field(5, ge=2, le=20)
    tfidf_C: float = Field(4.0, gt=0)  # the TF-IDF model's LogisticRegression C (baseline.tfidf's features)
    filter_by: FilterBy = "prune_by_noise_rate"  # cleanlab's rule for which rows are issues
    max_rows: PositiveInt | None = None  # a seeded stratified sample of train is audited; null: all of it
    inject_fraction: float = Field(0.05, ge=0, lt=0.5)  # share of labels flipped to measure the audit; 0 skips it
    top_errors: PositiveInt = 50  # evaluate: how many of the most confident test errors are checked
    shown: PositiveInt = 100  # ranked rows kept in plots/<key>/label_issues/top_issues.csv


def audited_rows(train: pd.DataFrame, cfg: LabelIssuesConfig, seed: int) -> pd.DataFrame:
    """The rows of train the audit reads: all of them, or a seeded stratified sample of `max_rows`."""
    if cfg.max_rows is None or cfg.max_rows >= len(train):
        return train.reset_index(drop=True)
    frac = cfg.max_rows / len(train)
    return train.groupby("label", group_keys=False).sample(frac=frac, random_state=seed).reset_index(drop=True)


def flip_labels(labels: np.ndarray, n_classes: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels with a seeded `fraction` of rows moved to another class chosen uniformly, which rows moved)."""
    rng = np.random.default_rng(seed)
    flipped = np.zeros(len(labels), dtype=bool)
    flipped[rng.choice(len(labels), size=round(fraction * len(labels)), replace=False)] = True
    noisy = labels.copy()
    shift = rng.integers(1, n_classes, size=int(flipped.sum()))  # never the same class
    noisy[flipped] = (labels[flipped] + shift) % n_classes
    return noisy, flipped


def issues(labels: np.ndarray, probs: np.ndarray, cfg: LabelIssuesConfig) -> tuple[np.ndarray, np.ndarray]:
    """(boolean mask of likely label errors by cleanlab's `filter_by` rule, label quality score per row)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    if len(np.unique(labels)) < probs.shape[1]:
        raise UserError("label_issues: every class needs rows in the audited train split")
    flagged = find_label_issues(labels, probs, filter_by=cfg.filter_by)
    return flagged, get_label_quality_scores(labels, probs)


def precision_recall(flagged: np.ndarray, truth: np.ndarray) -> dict[str, float | int]:
    """How the flags score against the rows known to be wrong."""
    hits = int((flagged & truth).sum())
    return {
        "flagged": int(flagged.sum()),
        "flipped": int(truth.sum()),
        "found": hits,
        "precision": hits / max(int(flagged.sum()), 1),
        "recall": hits / max(int(truth.sum()), 1),
    }


def class_report(labels: np.ndarray, flagged: np.ndarray, probs: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Per given class: rows, rows flagged and their rate; and cleanlab's estimated joint P(given, true)."""
    from cleanlab.count import estimate_joint

    joint = estimate_joint(labels, probs)
    per_class = {
        name: {
            "rows": int((labels == i).sum()),
            "flagged": int(flagged[labels == i].sum()),
            "flagged_rate": float(flagged[labels == i].mean()),
        }
        for i, name in enumerate(names)
    }
    return {
        "per_class": per_class,
        "joint_given_true": {given: {true: float(joint[i, j]) for j, true in enumerate(names)} for i, given in enumerate(names)},
    }


def ranked_issues(
    rows: pd.DataFrame, flagged: np.ndarray, quality: np.ndarray, probs: np.ndarray, names: list[str]
) -> pd.DataFrame:
    """The flagged rows, lowest label quality first: id, text, given and suggested label, score."""
    table = pd.DataFrame(
        {
            "id": rows["id"].to_numpy(),
            "text": rows["text"].to_numpy(),
            "given_label": [names[i] for i in rows["label"]],
            "suggested_label": [names[i] for i in probs.argmax(axis=1)],
            "label_quality": np.round(quality, 6),
        }
    )[flagged]
    return table.sort_values(["label_quality", "id"], kind="stable").reset_index(drop=True)


def joint_table(joint: dict[str, dict[str, float]]) -> pd.DataFrame:
    """The estimated joint as long rows (given, true, share) for charts and readers."""
    return pd.DataFrame([{"given": g, "true": t, "share": round(v, 6)} for g, row in joint.items() for t, v in row.items()])


def flag_test_errors(
    labels: np.ndarray, probs: np.ndarray, analysis: pd.DataFrame, cfg: LabelIssuesConfig
) -> tuple[np.ndarray, dict[str, Any]]:
    """Which test rows the same rule flags as likely label errors from the model's test probabilities, and
    how many of the `top_errors` most confident errors are among them. Reporting only: no test label is
    changed and nothing is chosen on test."""
    from cleanlab.filter import find_label_issues

    if len(np.unique(labels)) < probs.shape[1]:
        flagged = np.zeros(len(labels), dtype=bool)
    else:
        flagged = find_label_issues(labels, probs, filter_by=cfg.filter_by)
    errors = analysis.assign(label_issue=flagged)[~analysis["correct"]]
    top = errors.sort_values(["confidence", "id"], ascending=[False, True], kind="stable").head(cfg.top_errors)
    return flagged, {
        "filter_by": cfg.filter_by,
        "test_rows_flagged": int(flagged.sum()),
        "top_confident_errors": len(top),
        "top_confident_errors_flagged": int(top["label_issue"].sum()),
    }
