"""Baselines: TF-IDF + logistic regression (grid-searched in one scikit-learn Pipeline) and the VADER lexicon."""

from __future__ import annotations

import tempfile
import warnings
from itertools import combinations_with_replacement
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field
from sklearn.base import clone
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, ParameterGrid, StratifiedKFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline

from sentiment.config import Section, UserError
from sentiment.data.hub import ensure_nltk
from sentiment.metrics import f1_macro


class TfidfConfig(Section):
    ngram_range: tuple[int, int]
    min_df: int | float
    max_df: int | float
    max_features: int | None
    sublinear_tf: bool


class TfidfModel(Section):
    """params.yaml `baseline`'s TF-IDF features and logistic-regression solver, read without its grid search (the
    label audit's `tfidf` model)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    tfidf: TfidfConfig
    solver: str
    max_iter: int = Field(ge=1)
    tol: float = Field(gt=0)
    n_jobs: int


class BaselineConfig(TfidfModel):
    """params.yaml `baseline`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    grid: dict[str, list[Any]]  # LogisticRegression arguments -> values to search
    cv_folds: int = Field(ge=2, le=20)


def one_vs_rest(cfg: TfidfModel, n_classes: int) -> bool:
    # liblinear is the fastest l1/l2 solver on sparse TF-IDF (saga with l1 takes minutes a fit here);
    # since scikit-learn 1.8 it is binary-only, so 3 classes run one-vs-rest, as it did before.
    return cfg.solver == "liblinear" and n_classes > 2


def build_pipeline(cfg: TfidfModel, seed: int, n_classes: int, memory: str | None = None) -> Pipeline:
    """TF-IDF over whitespace tokens of `text_norm` -> logistic regression, as one estimator."""
    tfidf = cfg.tfidf
    vectorizer = TfidfVectorizer(
        token_pattern=r"\S+",  # text_norm is already tokenised; keep "n't", "!" and "?"
        lowercase=False,
        ngram_range=tuple(tfidf.ngram_range),
        min_df=tfidf.min_df,
        max_df=tfidf.max_df,
        max_features=tfidf.max_features,
        sublinear_tf=tfidf.sublinear_tf,
        dtype=np.float32,
    )
    classifier = LogisticRegression(solver=cfg.solver, max_iter=cfg.max_iter, tol=cfg.tol, random_state=seed)
    if one_vs_rest(cfg, n_classes):
        classifier = OneVsRestClassifier(classifier)
    return Pipeline([("tfidf", vectorizer), ("clf", classifier)], memory=memory)


def param_grid(grid: dict[str, list[Any]], wrapped: bool) -> dict[str, list[Any]]:
    """params.yaml `baseline.grid` (LogisticRegression argument names) -> GridSearchCV grid."""
    if not grid or any(not isinstance(v, list) or not v for v in grid.values()):
        raise UserError(f"invalid param baseline.grid={grid!r}: expected non-empty lists of values")
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
            raise UserError(f"scikit-learn rejects {where} (solver {solver!r}): {str(err).splitlines()[0]}") from None


def grid_search(train: pd.DataFrame, cfg: BaselineConfig, seed: int, n_classes: int) -> GridSearchCV:
    grid = param_grid(cfg.grid, one_vs_rest(cfg, n_classes))
    with tempfile.TemporaryDirectory(prefix="tfidf-cache-") as cache:
        # Pipeline memory caches each fold's fitted TF-IDF, so 24 grid points cost 5 vectorizer fits, not 120.
        pipeline = build_pipeline(cfg, seed, n_classes, memory=cache)
        validate_grid(pipeline, grid, n_classes)
        search = GridSearchCV(
            pipeline,
            grid,
            scoring="f1_macro",
            cv=StratifiedKFold(cfg.cv_folds, shuffle=True, random_state=seed),
            n_jobs=cfg.n_jobs,
            refit=True,
        )
        search.fit(train["text_norm"], train["label"])
        search.best_estimator_.set_params(memory=None)
    return search


def cv_table(search: GridSearchCV) -> pd.DataFrame:
    """One row per grid point: its params and fold scores (no timings: committed files stay reproducible)."""
    results = pd.DataFrame(search.cv_results_)
    # the params from their dicts, not the param_ columns: pandas stores a None there as a missing value
    points = [{short_name(k): "none" if v is None else v for k, v in point.items()} for point in search.cv_results_["params"]]
    scores = results[[c for c in results.columns if "test_score" in c]]
    return pd.concat([pd.DataFrame(points), scores], axis=1)


# --- VADER lexicon ---------------------------------------------------------------------


def vader_scores(texts: pd.Series) -> np.ndarray:
    """VADER compound score in [-1, 1] for each text."""
    ensure_nltk("sentiment/vader_lexicon.zip", "vader_lexicon")
    from nltk.sentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return np.array([analyzer.polarity_scores(t)["compound"] for t in texts])


def label_order_correlation(scores: np.ndarray, labels: np.ndarray, key: str) -> float:
    """Spearman correlation of VADER's compound score with the label id; a one-line error unless it is positive,
    as `polarity: true` (labels listed negative first, positive last) implies."""
    from scipy.stats import ConstantInputWarning, spearmanr

    with warnings.catch_warnings():  # a constant score is reported below as an undefined (nan) correlation
        warnings.simplefilter("ignore", ConstantInputWarning)
        rho = float(spearmanr(scores, labels).statistic)
    if not rho > 0:  # NaN too: a constant score says nothing about the order
        raise UserError(
            f"invalid param datasets.{key}.labels: polarity is true but VADER's score does not rise with the label id "
            f"(Spearman {rho:.3f} on dev): list the labels from negative to positive, or set polarity: false"
        )
    return rho


def apply_thresholds(scores: np.ndarray, thresholds: list[float]) -> np.ndarray:
    """Class = number of thresholds at or below the score (ordered classes: negative < … < positive)."""
    return np.searchsorted(np.asarray(thresholds), scores, side="right")


def fit_thresholds(scores: np.ndarray, labels: np.ndarray, n_classes: int, step: float = 0.02) -> list[float]:
    """The n_classes-1 ordered cut points on the score that maximise F1-macro on (dev) labels."""
    candidates = np.round(np.arange(-1.0, 1.0 + step / 2, step), 6)
    best, best_f1 = None, -1.0
    for cut in combinations_with_replacement(candidates, n_classes - 1):
        f1 = f1_macro(labels, apply_thresholds(scores, list(cut)), n_classes)
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


def portable(model: Pipeline) -> Pipeline:
    """The fitted pipeline without the vectorizer's `_stop_words_id`: scikit-learn keeps that memory
    address only to skip a re-check, and without it the same fit pickles to the same bytes."""
    vars(model.named_steps["tfidf"]).pop("_stop_words_id", None)
    return model
