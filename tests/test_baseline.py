import numpy as np
import pytest
from sklearn.multiclass import OneVsRestClassifier

from conftest import toy_sentiment
from sentiment.config import UserError
from sentiment.data.datasets import predictions_frame
from sentiment.models.baselines import BaselineConfig, VaderModel, apply_thresholds, cv_table, fit_thresholds, grid_search

RAW_CFG = {
    "tfidf": {"ngram_range": [1, 2], "min_df": 1, "max_df": 1.0, "max_features": 1000, "sublinear_tf": True},
    "solver": "liblinear",
    "max_iter": 100,
    "tol": 1e-4,
    "grid": {"C": [0.5, 4], "class_weight": [None, "balanced"], "l1_ratio": [0.0]},
    "cv_folds": 3,
    "n_jobs": 1,
}
CFG = BaselineConfig.model_validate(RAW_CFG)


def test_pipeline_learns_a_separable_toy_problem_and_tables_every_grid_point():
    train, test = toy_sentiment(90, seed=1), toy_sentiment(40, seed=2)
    search = grid_search(train, CFG, seed=0, n_classes=2)
    assert (search.predict(test["text_norm"]) == test["label"]).mean() == 1.0
    table = cv_table(search)
    folds = [f"split{i}_test_score" for i in range(CFG.cv_folds)]
    scores = [*folds, "mean_test_score", "std_test_score", "rank_test_score"]
    assert list(table.columns) == ["C", "class_weight", "l1_ratio", *scores]  # the grid's params, then scores, no timings
    points = list(zip(table["C"], table["class_weight"], table["l1_ratio"], strict=True))
    grid = {(c, weight, 0.0) for c in (0.5, 4) for weight in ("none", "balanced")}  # None spelt "none" in the CSV
    assert len(points) == 4 and set(points) == grid
    np.testing.assert_allclose(table["mean_test_score"], table[folds].mean(axis=1))
    best = table.loc[table["rank_test_score"] == 1].iloc[0]
    assert best["mean_test_score"] == pytest.approx(table["mean_test_score"].max())


def test_three_classes_with_liblinear_run_one_vs_rest():
    train = toy_sentiment(90)
    train.loc[train.index % 3 == 0, ["text_norm", "label"]] = ["neutral plain words here", 2]
    search = grid_search(train, BaselineConfig.model_validate({**RAW_CFG, "grid": {"C": [1]}}), seed=0, n_classes=3)
    assert isinstance(search.best_estimator_.named_steps["clf"], OneVsRestClassifier)
    assert search.predict_proba(train["text_norm"]).shape == (90, 3)
    assert (search.predict(train["text_norm"]) == train["label"]).all()  # three separable classes, each found


def test_a_grid_value_scikit_learn_rejects_fails_before_fitting():
    bad = BaselineConfig.model_validate({**RAW_CFG, "solver": "lbfgs", "grid": {"C": [1], "l1_ratio": [1.0]}})
    with pytest.raises(UserError, match=r"baseline.grid.l1_ratio=1.0.*solver 'lbfgs'") as err:
        grid_search(toy_sentiment(30), bad, seed=0, n_classes=2)
    assert "\n" not in str(err.value)


def test_predictions_have_the_shared_schema_and_probabilities_sum_to_one():
    probs = np.array([[0.2, 0.8], [0.9, 0.1]])
    frame = predictions_frame(["a", "b"], [1, 1], probs, ["negative", "positive"], logits=np.log(probs))
    assert list(frame.columns) == ["id", "label", "pred", "prob_negative", "prob_positive", "logit_negative", "logit_positive"]
    assert frame["pred"].tolist() == [1, 0]
    np.testing.assert_allclose(frame[["prob_negative", "prob_positive"]].sum(axis=1), 1.0)


def test_vader_threshold_is_the_dev_optimal_cut():
    scores = np.array([-0.8, -0.5, -0.1, 0.05, 0.2, 0.3, 0.6, 0.9])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])  # perfectly separated between 0.05 and 0.2
    (cut,) = fit_thresholds(scores, labels, 2)
    assert 0.05 < cut <= 0.2
    assert (apply_thresholds(scores, [cut]) == labels).all()


def test_vader_two_thresholds_for_three_classes():
    scores = np.array([-0.9, -0.6, -0.05, 0.0, 0.04, 0.5, 0.8])
    labels = np.array([0, 0, 1, 1, 1, 2, 2])
    model = VaderModel().fit(scores, labels, 3)
    assert (model.predict(scores) == labels).all()
    np.testing.assert_allclose(model.predict_proba(scores).sum(axis=1), 1.0)
