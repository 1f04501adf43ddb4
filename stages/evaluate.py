"""evaluate stage: metrics, curves, calibration (with temperature scaling) and intervals for every model.

    python -m stages.evaluate <dataset key>

Reads only the shared predictions format (`id, label, pred, prob_<class>…[, logit_<class>…]`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages.common import (
    StageError,
    atomic_dir,
    dataset_params,
    load_params,
    require_range,
    run_main,
    write_csv,
    write_json,
)
from stages.data import label_names, logit_columns, prob_columns, read_clean
from stages.metrics import (
    bootstrap_interval,
    calibration,
    classification,
    curve_points,
    fit_temperature,
    mcnemar_exact,
    ranking,
    reliability,
    scale,
)


def accuracy(labels: np.ndarray, preds: np.ndarray) -> float:
    return float(np.mean(labels == preds))


def load_predictions(path: Path, split: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Read one predictions file and check it against its split: same ids and labels, valid probabilities."""
    if not path.exists():
        raise StageError(f"missing predictions file: {path} (run `dvc repro` to build it)")
    frame = pd.read_csv(path, dtype={"id": str})
    missing = [c for c in ["id", "label", "pred", *prob_columns(names)] if c not in frame.columns]
    if missing:
        raise StageError(f"{path}: missing columns {missing}")
    if len(frame) != len(split) or set(frame["id"]) != set(split["id"]):
        extra = sorted(set(frame["id"]) - set(split["id"]))[:3]
        raise StageError(f"{path}: ids do not match the split ({len(frame)} rows vs {len(split)}; e.g. unknown {extra})")
    frame = frame.set_index("id").loc[split["id"]].reset_index()
    if not np.array_equal(frame["label"].to_numpy(), split["label"].to_numpy()):
        raise StageError(f"{path}: labels differ from the split's labels")
    probs = frame[prob_columns(names)].to_numpy()
    if np.isnan(probs).any() or np.abs(probs.sum(axis=1) - 1).max() > 1e-3:
        worst = probs.sum(axis=1)[np.argmax(np.abs(probs.sum(axis=1) - 1))]
        raise StageError(f"{path}: probabilities are NaN or do not sum to 1 (a row sums to {worst:.4f})")
    frame[prob_columns(names)] = probs / probs.sum(axis=1, keepdims=True)  # undo CSV rounding
    return frame


def logits_of(frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    """Raw logits where the model wrote them, else log-probabilities (softmax-equivalent)."""
    if all(c in frame.columns for c in logit_columns(names)):
        return frame[logit_columns(names)].to_numpy()
    return np.log(np.clip(frame[prob_columns(names)].to_numpy(), 1e-12, 1))


def evaluate_model(frames: dict[str, pd.DataFrame], names: list[str], cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    """All figures for one model on dev and test; temperature fitted on dev logits, applied to both."""
    temperature = fit_temperature(logits_of(frames["dev"], names), frames["dev"]["label"].to_numpy())
    out: dict[str, Any] = {"temperature": temperature}
    for split, frame in frames.items():
        labels, preds = frame["label"].to_numpy(), frame["pred"].to_numpy()
        probs = frame[prob_columns(names)].to_numpy()
        figures = classification(labels, preds, names)
        figures.update(ranking(labels, probs, names))
        figures["calibration"] = calibration(labels, probs, cfg["ece_bins"])
        figures["calibration_scaled"] = calibration(labels, scale(logits_of(frame, names), temperature), cfg["ece_bins"])
        if split == "test":
            n, s = cfg["bootstrap_resamples"], seed
            figures["ci95"] = {
                "accuracy": bootstrap_interval(labels, preds, "accuracy", n, s),
                "f1_macro": bootstrap_interval(labels, preds, "f1_macro", n, s),
            }
        out[split] = figures
    return out


def comparison_table(results: dict[str, Any]) -> pd.DataFrame:
    """The baseline-vs-finetune and dev-vs-test table."""
    rows = []
    for model, r in results.items():
        for split in ("dev", "test"):
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    meta = {"Software": None}
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ConfusionMatrixDisplay.from_predictions(labels, preds, display_labels=names, ax=ax, colorbar=False)
    ax.set_title(f"{title}: confusion (test)")
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=110, metadata=meta)
    plt.close(fig)

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
    fig.savefig(out / "roc_pr.png", dpi=110, metadata=meta)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.5, 4))
    for p, label in ((probs, "before"), (scaled, "after temperature scaling")):
        r = reliability(labels, p, bins)
        ax.plot(r["confidence"], r["accuracy"], marker="o", label=label)
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(title=f"{title}: reliability (test)", xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=110, metadata=meta)
    plt.close(fig)


def main(argv: list[str]) -> None:
    key = argv[0]
    params = load_params()
    names = label_names(dataset_params(params, key))
    cfg = params["evaluate"]
    require_range("evaluate.ece_bins", cfg["ece_bins"], 2, 1000)
    require_range("evaluate.bootstrap_resamples", cfg["bootstrap_resamples"], 1000, 10**6)
    models: dict[str, str] = cfg["models"]
    primary = cfg["primary"]
    if primary not in models:
        raise StageError(f"invalid param evaluate.primary={primary!r}: not in evaluate.models {sorted(models)}")
    splits = {split: read_clean(key, split) for split in ("dev", "test")}
    preds = {
        model: {s: load_predictions(Path("data") / key / stage / f"{model}_{s}.csv", splits[s], names) for s in splits}
        for model, stage in models.items()
    }
    results = {model: evaluate_model(frames, names, cfg, params["seed"]) for model, frames in preds.items()}
    baselines = [m for m in models if m != primary]
    report: dict[str, Any] = {"models": results}
    test_labels = splits["test"]["label"].to_numpy()
    if baselines:
        best = max(baselines, key=lambda m: results[m]["dev"]["f1_macro"])  # chosen on dev, never on test
        report["best_baseline"] = best
        report["mcnemar_test"] = {
            f"{primary}_vs_{best}": mcnemar_exact(
                test_labels, preds[primary]["test"]["pred"].to_numpy(), preds[best]["test"]["pred"].to_numpy()
            )
        }

    # plot data for the primary model on test
    frame = preds[primary]["test"]
    probs = frame[prob_columns(names)].to_numpy()
    scaled = scale(logits_of(frame, names), results[primary]["temperature"])
    plots = Path("plots") / key / "evaluate"
    write_csv(
        pd.DataFrame({"actual": [names[i] for i in test_labels], "predicted": [names[i] for i in frame["pred"]]}),
        plots / "confusion.csv",
    )
    for k, name in enumerate(names):
        if (test_labels == k).any() and not (test_labels == k).all():
            roc, pr = curve_points(test_labels, probs, k)
            write_csv(pd.DataFrame(roc), plots / f"roc_{name}.csv")
            write_csv(pd.DataFrame(pr), plots / f"pr_{name}.csv")
    for p, tag in ((probs, "before"), (scaled, "after")):
        write_csv(pd.DataFrame(reliability(test_labels, p, cfg["ece_bins"])), plots / f"calibration_{tag}.csv")
    write_csv(comparison_table(results), plots / "comparison.csv")
    with atomic_dir(Path("plots") / key / "figures") as figures:
        write_figures(figures, test_labels, probs, scaled, frame["pred"].to_numpy(), names, cfg["ece_bins"], key)

    # the reference run's analysis files
    test = splits["test"]
    confidence = probs.max(axis=1)
    analysis = pd.DataFrame(
        {
            "id": test["id"],
            "text": test["text"],
            "label": [names[i] for i in test_labels],
            "pred": [names[i] for i in frame["pred"]],
            "confidence": confidence,
            "confidence_scaled": scaled.max(axis=1),
            "correct": test_labels == frame["pred"],
        }
    )
    with atomic_dir(Path("data") / key / "evaluate") as out:
        analysis.to_csv(out / "test_predictions.csv", index=False, float_format="%.6g")
        errors = analysis[~analysis["correct"]].sort_values(["confidence", "id"], ascending=[False, True], kind="stable")
        errors.to_csv(out / "misclassified.csv", index=False, float_format="%.6g")
    write_json(f"metrics/{key}/evaluate.json", report)
    for model, r in results.items():
        t = r["test"]
        print(
            f"[evaluate:{key}] {model}: test acc {t['accuracy']:.4f} {t['ci95']['accuracy']} F1 {t['f1_macro']:.4f} "
            f"ECE {t['calibration']['ece']:.4f} -> {t['calibration_scaled']['ece']:.4f} (T={r['temperature']:.3f})"
        )


if __name__ == "__main__":
    run_main(main)
