"""baseline stage: TF-IDF + logistic regression (grid-searched) and a VADER lexicon baseline.

python -m stages.baseline <dataset key>
"""

from __future__ import annotations

import tempfile
import time
from itertools import combinations_with_replacement
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import GridSearchCV, ParameterGrid, StratifiedKFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline

from stages.common import StageError, atomic_dir, dataset_params, load_params, require_range, run_main, write_csv, write_json
from stages.data import label_names, predictions_frame, read_clean
from stages.hub import ensure_nltk

MODELS = ("tfidf_lr", "vader")


def baseline_dir(key: str) -> Path:
    return Path("data") / key / "baseline"


def one_vs_rest(cfg: dict[str, Any], n_classes: int) -> bool:
    # liblinear is the fastest l1/l2 solver on sparse TF-IDF (saga with l1 takes minutes a fit here);
    # since scikit-learn 1.8 it is binary-only, so 3 classes run one-vs-rest, as it did before.
    return cfg["solver"] == "liblinear" and n_classes > 2


def build_pipeline(cfg: dict[str, Any], seed: int, n_classes: int, memory: str | None = None) -> Pipeline:
    """TF-IDF over whitespace tokens of `text_norm` -> logistic regression, as one estimator."""
    tfidf = cfg["tfidf"]
    vectorizer = TfidfVectorizer(
        token_pattern=r"\S+",  # text_norm is already tokenised; keep "n't", "!" and "?"
        lowercase=False,
        ngram_range=tuple(tfidf["ngram_range"]),
        min_df=tfidf["min_df"],
        max_df=tfidf["max_df"],
        max_features=tfidf["max_features"],
        sublinear_tf=tfidf["sublinear_tf"],
        dtype=np.float32,
    )
    classifier = LogisticRegression(solver=cfg["solver"], max_iter=cfg["max_iter"], tol=cfg["tol"], random_state=seed)
    if one_vs_rest(cfg, n_classes):
        classifier = OneVsRestClassifier(classifier)
    return Pipeline([("tfidf", vectorizer), ("clf", classifier)], memory=memory)


def param_grid(grid: dict[str, list[Any]], wrapped: bool) -> dict[str, list[Any]]:
    """params.yaml `baseline.grid` (LogisticRegression argument names) -> GridSearchCV grid."""
    if not grid or any(not isinstance(v, list) or not v for v in grid.values()):
        raise StageError(f"invalid param baseline.grid={grid!r}: expected non-empty lists of values")
    prefix = "clf__estimator__" if wrapped else "clf__"
    return {f"{prefix}{name}": values for name, values in grid.items()}


def cfg_solver(pipeline: Pipeline) -> str:
    clf = pipeline.named_steps["clf"]
    return getattr(clf, "estimator", clf).solver


def short_name(grid_key: str) -> str:
    return grid_key.rsplit("__", 1)[-1]


def validate_grid(pipeline: Pipeline, grid: dict[str, list[Any]], n_classes: int) -> None:
    """Ask scikit-learn to fit every grid point on a toy problem, so rejections come before minutes of CV."""
    toy_x = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 2.0], [2.0, 0.0], [1.0, 1.0], [0.5, 0.1]])
    toy_y = np.arange(6) % n_classes
    for point in ParameterGrid(grid):
        try:
            settings = {k.removeprefix("clf__"): v for k, v in point.items()}
            clone(pipeline.named_steps["clf"]).set_params(**settings).fit(toy_x, toy_y)
        except (ValueError, TypeError) as err:
            where = ", ".join(f"baseline.grid.{short_name(k)}={v!r}" for k, v in point.items())
            solver = cfg_solver(pipeline)
            raise StageError(f"scikit-learn rejects {where} (solver {solver!r}): {str(err).splitlines()[0]}") from None


def grid_search(train: pd.DataFrame, cfg: dict[str, Any], seed: int, n_classes: int) -> GridSearchCV:
    grid = param_grid(cfg["grid"], one_vs_rest(cfg, n_classes))
    with tempfile.TemporaryDirectory(prefix="tfidf-cache-") as cache:
        # Pipeline memory caches each fold's fitted TF-IDF, so 24 grid points cost 5 vectorizer fits, not 120.
        pipeline = build_pipeline(cfg, seed, n_classes, memory=cache)
        validate_grid(pipeline, grid, n_classes)
        search = GridSearchCV(
            pipeline,
            grid,
            scoring="f1_macro",
            cv=StratifiedKFold(cfg["cv_folds"], shuffle=True, random_state=seed),
            n_jobs=cfg["n_jobs"],
            refit=True,
        )
        search.fit(train["text_norm"], train["label"])
        search.best_estimator_.set_params(memory=None)
    return search


def cv_table(search: GridSearchCV) -> pd.DataFrame:
    """One row per grid point: its params and fold scores (no timings: committed files stay reproducible)."""
    results = pd.DataFrame(search.cv_results_)
    keep = [c for c in results.columns if c.startswith("param_") or "test_score" in c]
    table = results[keep].rename(columns=lambda c: short_name(c.removeprefix("param_")))
    return table.map(lambda v: "none" if v is None else v)


# --- VADER lexicon ---------------------------------------------------------------------


def vader_scores(texts: pd.Series) -> np.ndarray:
    """VADER compound score in [-1, 1] for each text."""
    ensure_nltk("sentiment/vader_lexicon.zip", "vader_lexicon")
    from nltk.sentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return np.array([analyzer.polarity_scores(t)["compound"] for t in texts])


def apply_thresholds(scores: np.ndarray, thresholds: list[float]) -> np.ndarray:
    """Class = number of thresholds at or below the score (ordered classes: negative < … < positive)."""
    return np.searchsorted(np.asarray(thresholds), scores, side="right")


def fit_thresholds(scores: np.ndarray, labels: np.ndarray, n_classes: int, step: float = 0.02) -> list[float]:
    """The n_classes-1 ordered cut points on the score that maximise F1-macro on (dev) labels."""
    candidates = np.round(np.arange(-1.0, 1.0 + step / 2, step), 6)
    best, best_f1 = None, -1.0
    for cut in combinations_with_replacement(candidates, n_classes - 1):
        f1 = f1_score(labels, apply_thresholds(scores, list(cut)), average="macro", labels=range(n_classes), zero_division=0)
        if f1 > best_f1 + 1e-12:
            best, best_f1 = list(cut), f1
    return [float(c) for c in best]


class VaderModel:
    """Dev-tuned thresholds for labels; a logistic map from compound score to class probabilities.

    The probabilities are a calibration fitted on dev (so its dev figures are in-sample).
    """

    def fit(self, scores: np.ndarray, labels: np.ndarray, n_classes: int) -> VaderModel:
        self.thresholds = fit_thresholds(scores, labels, n_classes)
        self.calibrator = LogisticRegression().fit(scores.reshape(-1, 1), labels)
        return self

    def predict(self, scores: np.ndarray) -> np.ndarray:
        return apply_thresholds(scores, self.thresholds)

    def predict_proba(self, scores: np.ndarray) -> np.ndarray:
        return self.calibrator.predict_proba(scores.reshape(-1, 1))


# --- stage -------------------------------------------------------------------------------


def scores(labels: np.ndarray, preds: np.ndarray) -> dict[str, float]:
    return {"accuracy": accuracy_score(labels, preds), "f1_macro": f1_score(labels, preds, average="macro")}


def main(argv: list[str]) -> None:
    key = argv[0]
    params = load_params()
    names = label_names(dataset_params(params, key))
    cfg = params["baseline"]
    require_range("baseline.cv_folds", cfg["cv_folds"], 2, 20)
    frames = {split: read_clean(key, split) for split in ("train", "dev", "test")}

    start = time.perf_counter()
    search = grid_search(frames["train"], cfg, params["seed"], len(names))
    print(
        f"[baseline:{key}] grid search: {len(search.cv_results_['params'])} points x {cfg['cv_folds']} folds "
        f"in {time.perf_counter() - start:.0f}s; best {search.best_params_} CV F1-macro {search.best_score_:.4f}"
    )
    model = search.best_estimator_

    compound = {split: vader_scores(frame["text"]) for split, frame in frames.items() if split != "train"}
    vader = VaderModel().fit(compound["dev"], frames["dev"]["label"].to_numpy(), len(names))

    report: dict[str, Any] = {
        "tfidf_lr": {
            "best_params": {short_name(k): v for k, v in search.best_params_.items()},
            "cv_f1_macro": search.best_score_,
        },
        "vader": {"thresholds": vader.thresholds, "probabilities": "logistic calibration of the compound score, fitted on dev"},
    }
    with atomic_dir(baseline_dir(key)) as out:
        for split in ("dev", "test"):
            frame = frames[split]
            labels = frame["label"].to_numpy()
            probs = model.predict_proba(frame["text_norm"])
            pred_frame = predictions_frame(frame["id"], labels, probs, names)
            pred_frame.to_csv(out / f"tfidf_lr_{split}.csv", index=False, float_format="%.6g")
            report["tfidf_lr"][split] = scores(labels, pred_frame["pred"])
            vader_pred = vader.predict(compound[split])
            vader_frame = predictions_frame(frame["id"], labels, vader.predict_proba(compound[split]), names)
            vader_frame["pred"] = vader_pred
            vader_frame.to_csv(out / f"vader_{split}.csv", index=False, float_format="%.6g")
            report["vader"][split] = scores(labels, vader_pred)
        # scikit-learn keeps id(stop_words), a memory address, on the vectorizer only to skip a
        # re-check; dropped so the same fit pickles to the same bytes (DVC then sees no change)
        vars(model.named_steps["tfidf"]).pop("_stop_words_id", None)
        joblib.dump(model, out / "tfidf_lr.joblib")
        joblib.dump(vader, out / "vader.joblib")
    write_csv(cv_table(search), f"plots/{key}/baseline_grid.csv")
    write_json(f"metrics/{key}/baseline.json", report)
    for name in MODELS:
        r = report[name]
        print(
            f"[baseline:{key}] {name}: dev acc {r['dev']['accuracy']:.4f} F1 {r['dev']['f1_macro']:.4f}; "
            f"test acc {r['test']['accuracy']:.4f} F1 {r['test']['f1_macro']:.4f}"
        )


if __name__ == "__main__":
    # run the imported module's main, so pickled classes (VaderModel) are `stages.baseline.…`,
    # loadable anywhere, not `__main__.…`
    from stages import baseline

    run_main(baseline.main)
