"""Audit of labels by confident learning (cleanlab), from out-of-fold class probabilities
(`sentiment.models.out_of_fold`): the rows cleanlab ranks as likely label errors, the estimated joint of
given and true labels and the natural error rate it implies, and how well the audit finds noise planted
on purpose (two kinds: uniform flips, and class-conditional noise shaped like the estimated joint),
scored on the rows the planting could choose (ranking figures, and precision and recall at a flag budget of
as many rows as were planted), beside the ranking figures over every audited row.
Also the audit of test labels from a model's out-of-sample test probabilities."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field, PositiveInt
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from sentiment.config import Section, UserError
from sentiment.models.config import ModelConfig
from sentiment.models.out_of_fold import EmbeddingModel

# cleanlab is imported where it is used: its package import loads Datalab and `datasets` (over a second),
# which the evaluate stage has no use for until it audits.
FilterBy = Literal["prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given"]
NOISE_KINDS = ("uniform", "class_conditional")
# `group_folds: auto` groups the folds when at least this share of rows lies inside another train text
# (SST-2's phrases of one sentence: nearly all rows; tweets: a few percent)
AUTO_GROUP_SHARE = 0.1
Folds = list[tuple[np.ndarray, np.ndarray]]
OutOfFold = Callable[[pd.DataFrame, np.ndarray, Folds], np.ndarray]  # (rows, labels, folds) -> probabilities


class EncoderAudit(Section):
    """params.yaml `label_issues.encoder`: the encoder and budget of `label_issues.model: encoder`, its own,
    so the audit never follows `model` or `train`."""

    model: ModelConfig
    epochs: float = Field(gt=0)
    learning_rate: float = Field(gt=0, le=1)
    batch_size: PositiveInt
    max_length: int = Field(ge=2)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)


class SuspectLabels(Section):
    """params.yaml `label_issues`'s rule and how many ranked rows are kept, read without the rest (evaluate audits
    the test labels by them)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    filter_by: FilterBy  # cleanlab's rule for which rows are issues
    shown: PositiveInt  # ranked rows kept in the plots CSVs (train issues, test suspects)


class LabelIssuesConfig(SuspectLabels):
    """params.yaml `label_issues`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    model: Literal["tfidf", "embeddings", "encoder"]  # where the out-of-fold probabilities come from
    folds: int = Field(ge=2, le=20)
    group_folds: Literal["auto"] | bool  # folds keep texts that contain one another together
    tfidf_C: float = Field(gt=0)  # the TF-IDF model's LogisticRegression C (baseline.tfidf's features)
    max_rows: PositiveInt | None  # a seeded stratified sample of train is audited; null: all of it
    inject_fraction: float = Field(ge=0, lt=0.5)  # share of labels planted wrong to measure the audit; 0 skips it
    embeddings: EmbeddingModel
    encoder: EncoderAudit


def audited_rows(train: pd.DataFrame, cfg: LabelIssuesConfig, seed: int) -> pd.DataFrame:
    """The rows of train the audit reads: all of them, or a seeded stratified sample of `max_rows`."""
    if cfg.max_rows is None or cfg.max_rows >= len(train):
        return train.reset_index(drop=True)
    frac = cfg.max_rows / len(train)
    return train.groupby("label", group_keys=False).sample(frac=frac, random_state=seed).reset_index(drop=True)


# --- folds grouped by the text that contains a row --------------------------------------------------------


def text_groups(texts: Sequence[str]) -> np.ndarray:
    """Each row's group: the position of the longest text that contains it as a run of whole words (case and
    spacing ignored), itself included; ties go to the earlier row. Only the longest texts are expanded into
    their word runs, each looked up in a hash of all texts, so 60k SST-2 phrases take about a second."""
    words = [tuple(str(t).lower().split()) for t in texts]
    rows_of: dict[tuple[str, ...], list[int]] = {}
    for i, w in enumerate(words):
        rows_of.setdefault(w, []).append(i)
    group = np.full(len(words), -1, dtype=np.int64)
    for i in sorted(range(len(words)), key=lambda i: (-len(words[i]), i)):
        if group[i] >= 0:  # inside a longer text already: that text's runs include this one's
            continue
        w = words[i]
        for start in range(len(w)):
            for end in range(start + 1, len(w) + 1):
                for j in rows_of.get(w[start:end], ()):
                    if group[j] < 0:
                        group[j] = i
        group[i] = i  # an empty text contains nothing, itself included
    return group


def shared_share(groups: np.ndarray) -> float:
    """The share of rows whose group holds more than one row."""
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    return float((counts[inverse] > 1).mean())


def grouped(cfg: LabelIssuesConfig, groups: np.ndarray) -> bool:
    """Whether the folds follow the groups: as set, or under `auto` when AUTO_GROUP_SHARE of rows share one."""
    return shared_share(groups) >= AUTO_GROUP_SHARE if cfg.group_folds == "auto" else bool(cfg.group_folds)


def fold_splits(labels: np.ndarray, groups: np.ndarray | None, folds: int, seed: int) -> Folds:
    """(fit rows, held-out rows) per fold, stratified by label; with `groups`, no group is split across folds."""
    if groups is None:
        return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(labels, labels))
    if len(np.unique(groups)) < folds:
        raise UserError(f"label_issues: {len(np.unique(groups))} text groups cannot fill {folds} folds")
    return list(StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(labels, labels, groups))


# --- cleanlab on out-of-fold probabilities ------------------------------------------------------------------


def issues(labels: np.ndarray, probs: np.ndarray, filter_by: str) -> tuple[np.ndarray, np.ndarray]:
    """(boolean mask of likely label errors by cleanlab's `filter_by` rule, label quality score per row)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    if len(np.unique(labels)) < probs.shape[1]:
        raise UserError("label_issues: every class needs rows in the audited labels")
    flagged = find_label_issues(labels, probs, filter_by=filter_by)
    return flagged, get_label_quality_scores(labels, probs)


def estimated_joint(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """cleanlab's estimate of P(given label i, true label j)."""
    from cleanlab.count import estimate_joint

    return estimate_joint(labels, probs)


def natural_error_rate(joint: np.ndarray) -> float:
    """The share of given labels that differ from the true one by the estimated joint: 1 − its trace."""
    return float(1 - np.trace(joint))


def class_report(labels: np.ndarray, flagged: np.ndarray, joint: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Per given class: rows, rows flagged and their rate; and the estimated joint P(given, true)."""
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


# --- planted noise -----------------------------------------------------------------------------------------


def plant_uniform(labels: np.ndarray, n_classes: int, count: int, eligible: np.ndarray, seed: int) -> np.ndarray:
    """Labels with `count` seeded rows among `eligible` moved to another class chosen uniformly."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(np.flatnonzero(eligible), size=count, replace=False)
    noisy = labels.copy()
    noisy[rows] = (labels[rows] + rng.integers(1, n_classes, size=count)) % n_classes  # never the same class
    return noisy


def shaped_noise_matrix(joint: np.ndarray, fraction: float, prior: np.ndarray) -> np.ndarray:
    """P(noisy label i | label j) shaped like the estimated noise (joint's columns normalised: which classes
    are confused, and how much more often) and scaled so that a `fraction` of rows with class shares `prior`
    moves; each class moves at most half its rows. With no noise estimated at all, every class moves uniformly."""
    k = len(joint)
    given_of_true = joint / joint.sum(axis=0, keepdims=True)
    off = given_of_true * (1 - np.eye(k))
    if off.sum() == 0:
        off = 1 - np.eye(k)
    rates = off.sum(axis=0)
    scale = fraction / float(rates @ prior)
    rates = np.minimum(rates * scale, 0.5)
    matrix = np.where(rates > 0, off / np.where(off.sum(axis=0) > 0, off.sum(axis=0), 1), 0) * rates
    return matrix + np.diag(1 - rates)


def plant_class_conditional(labels: np.ndarray, matrix: np.ndarray, count: int, eligible: np.ndarray, seed: int) -> np.ndarray:
    """Labels with `count` seeded rows among `eligible` moved as `matrix` (P(noisy i | label j)) says: each
    class gives its share of the count, to each other class in the matrix's proportions."""
    rng = np.random.default_rng(seed)
    k = len(matrix)
    moving = (1 - np.diag(matrix)) * np.bincount(labels[eligible], minlength=k)
    per_class = np.floor(moving / max(moving.sum(), 1e-12) * count).astype(int)
    per_class[np.argsort(-(moving / max(moving.sum(), 1e-12) * count - per_class), kind="stable")[: count - per_class.sum()]] += 1
    noisy = labels.copy()
    for j in range(k):
        pool = np.flatnonzero(eligible & (labels == j))
        rows = rng.choice(pool, size=min(per_class[j], len(pool)), replace=False)
        to = np.delete(np.arange(k), j)
        weights = np.delete(matrix[:, j], j)
        noisy[rows] = rng.choice(to, size=len(rows), p=weights / weights.sum() if weights.sum() else None)
    return noisy


def ranking(quality: np.ndarray, planted: np.ndarray) -> dict[str, float]:
    """How well a low label-quality score picks out the planted rows: AUROC, average precision, and recall
    among the 2 × planted lowest-scored rows."""
    suspicion = -quality
    budget = min(2 * int(planted.sum()), len(quality))
    lowest = np.argsort(quality, kind="stable")[:budget]
    return {
        "auroc": float(roc_auc_score(planted, suspicion)),
        "average_precision": float(average_precision_score(planted, suspicion)),
        "recall_at_2x_budget": float(planted[lowest].sum() / max(int(planted.sum()), 1)),
    }


def at_budget(quality: np.ndarray, planted: np.ndarray) -> dict[str, float | int]:
    """The lowest-scored rows, as many as were planted (the flag budget), scored: the share of them that were
    planted (precision) and the share of the planted rows among them (recall); equal at this budget, both at most 1."""
    budget = int(planted.sum())
    found = int(planted[np.argsort(quality, kind="stable")[:budget]].sum())
    return {"budget": budget, "precision_at_budget": found / max(budget, 1), "recall_at_budget": found / max(budget, 1)}


def planted_report(flagged: np.ndarray, quality: np.ndarray, planted: np.ndarray, plantable: np.ndarray) -> dict[str, Any]:
    """The audit of planted labels scored on the `plantable` rows (those the planting could choose: rows flagged
    on the given labels are never planted, and would count as false alarms that natural noise sets): counts,
    the flags' precision and recall there, precision and recall at the flag budget, the ranking figures; and
    the ranking figures over every audited row (`all_rows`, natural noise included), for comparison."""
    if (planted & ~plantable).any():
        raise ValueError("planted rows must be plantable")
    found = int((flagged & planted).sum())
    flagged_plantable = int((flagged & plantable).sum())
    return {
        "planted": int(planted.sum()),
        "fraction": round(float(planted.mean()), 6),
        "plantable_rows": int(plantable.sum()),
        "flagged": int(flagged.sum()),
        "flagged_plantable": flagged_plantable,
        "found": found,
        "precision": found / max(flagged_plantable, 1),
        "recall": found / max(int(planted.sum()), 1),
        **at_budget(quality[plantable], planted[plantable]),
        **ranking(quality[plantable], planted[plantable]),
        "all_rows": ranking(quality, planted),
    }


def audit(
    rows: pd.DataFrame,
    names: list[str],
    cfg: LabelIssuesConfig,
    out_of_fold: OutOfFold,
    seed: int,
    group_folds: bool | None = None,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray]:
    """The audit of `rows`' labels with `out_of_fold(rows, labels, folds)` probabilities, folds grouped as
    `group_folds` says (default: `cfg.group_folds`), and of the noise planted on them when
    `cfg.inject_fraction`: (report, flagged rows, label quality, out-of-fold probabilities)."""
    labels = rows["label"].to_numpy()
    groups = text_groups(rows["text"].tolist())
    use_groups = grouped(cfg, groups) if group_folds is None else group_folds
    folds = fold_splits(labels, groups if use_groups else None, cfg.folds, seed)
    probs = out_of_fold(rows, labels, folds)
    flagged, quality = issues(labels, probs, cfg.filter_by)
    joint = estimated_joint(labels, probs)
    natural = natural_error_rate(joint)
    report = {
        "model": cfg.model,
        "folds": cfg.folds,
        "grouped_folds": use_groups,
        "rows_sharing_a_text_group": shared_share(groups),
        "filter_by": cfg.filter_by,
        "rows_audited": len(rows),
        "flagged": int(flagged.sum()),
        "flagged_rate": float(flagged.mean()),
        "out_of_fold_accuracy": float((probs.argmax(axis=1) == labels).mean()),
        "natural_error_rate": natural,
        **class_report(labels, flagged, joint, names),
    }
    if cfg.inject_fraction:
        # rows flagged on the given labels are probably wrong already: a flip there could correct an error
        eligible = ~flagged
        count = min(round(cfg.inject_fraction * len(labels)), int(eligible.sum()))
        prior = np.bincount(labels, minlength=len(names)) / len(labels)
        matrix = shaped_noise_matrix(joint, cfg.inject_fraction, prior)
        noisy_labels = {
            "uniform": plant_uniform(labels, len(names), count, eligible, seed),
            "class_conditional": plant_class_conditional(labels, matrix, count, eligible, seed),
        }
        report["planted"] = {"seed": seed, "excluded_flagged_rows": int(flagged.sum())}
        for kind in NOISE_KINDS:
            noisy = noisy_labels[kind]
            noisy_flagged, noisy_quality = issues(noisy, out_of_fold(rows, noisy, folds), cfg.filter_by)
            report["planted"][kind] = planted_report(noisy_flagged, noisy_quality, noisy != labels, eligible)
        report["planted"]["class_conditional"]["noise_matrix"] = {
            f"{names[i]}<-{names[j]}": round(float(matrix[i, j]), 6)
            for j in range(len(names))
            for i in range(len(names))
            if i != j
        }
    return report, flagged, quality, probs


# --- tables ------------------------------------------------------------------------------------------------


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


# --- test labels ---------------------------------------------------------------------------------------------


def audit_test_labels(
    test: pd.DataFrame, probs: np.ndarray, names: list[str], filter_by: str, baseline: tuple[str, np.ndarray] | None = None
) -> tuple[np.ndarray, pd.DataFrame, dict[str, Any]]:
    """The test labels audited by cleanlab from a reference model's out-of-sample test probabilities, for a
    person to review: (which rows are suspect, the suspects lowest label quality first, with the `baseline`
    (name, predicted labels) model's label beside the reference's, and the report: how many suspects, and how
    many of them both models label otherwise than given). Reporting only: no test label is changed, nothing
    chosen on test."""
    labels = test["label"].to_numpy()
    every_class = len(np.unique(labels)) == probs.shape[1]
    if every_class:
        flagged, quality = issues(labels, probs, filter_by)
    else:  # cleanlab needs rows of every class
        flagged, quality = np.zeros(len(labels), dtype=bool), np.ones(len(labels))
    suspects = ranked_issues(test, flagged, quality, probs, names)
    report: dict[str, Any] = {
        "filter_by": filter_by,
        "test_rows": len(labels),
        "suspects": int(flagged.sum()),
        "suspect_rate": float(flagged.mean()),
        "natural_error_rate": natural_error_rate(estimated_joint(labels, probs)) if every_class else None,
        "baseline": None,
        "disputed_by_both": None,
        "disputed_by_both_share": None,
    }
    if baseline is not None:
        name, predicted = baseline
        both = (probs.argmax(axis=1) != labels) & (predicted != labels)
        positions = pd.Series(np.arange(len(test)), index=test["id"].to_numpy())[suspects["id"]].to_numpy()
        suspects.insert(
            suspects.columns.get_loc("suggested_label") + 1, "baseline_label", [names[i] for i in predicted[positions]]
        )
        report |= {
            "baseline": name,
            "disputed_by_both": int(both[flagged].sum()),
            "disputed_by_both_share": float(both[flagged].mean()) if flagged.any() else None,
        }
    return flagged, suspects, report
