import json

import numpy as np
import pytest
from scipy import stats
from scipy.special import softmax
from sklearn.metrics import accuracy_score

from sentiment.metrics import (
    accuracy_of_resamples,
    bootstrap_interval,
    brier,
    classification,
    expected_calibration_error,
    f1_macro,
    f1_macro_of_resamples,
    fit_temperature,
    mcnemar_exact,
    ranking,
)


def test_ece_on_a_constructed_example():
    # confidences .9 .8 .6 .7 .9 (bins 13, 12, 9, 10, 13 of 15); rows 3 and 4 are wrong
    labels = np.array([0, 1, 1, 0, 1])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]])
    expected = (2 * 0.1 + 0.2 + 0.6 + 0.7) / 5
    assert expected_calibration_error(labels, probs, 15) == pytest.approx(expected)


def test_brier_sums_over_classes():
    assert brier(np.array([0, 1]), np.array([[1.0, 0.0], [0.5, 0.5]])) == pytest.approx(0.25)


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, size=(20000, 3))
    labels = np.array([rng.choice(3, p=p) for p in softmax(true_logits, axis=1)])
    assert fit_temperature(true_logits * 2.5, labels) == pytest.approx(2.5, rel=0.05)


def test_mcnemar_exact_on_a_known_table():
    # 10 discordant pairs split 9/1: two-sided binomial p = 22/1024
    labels = np.zeros(30, dtype=int)
    a = np.zeros(30, dtype=int)
    b = np.zeros(30, dtype=int)
    b[:9] = 1
    a[9] = 1
    result = mcnemar_exact(labels, a, b)
    assert (result["a_right_b_wrong"], result["a_wrong_b_right"]) == (9, 1)
    assert result["p_value"] == pytest.approx(22 / 1024)


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    preds = np.where(rng.random(300) < 0.8, labels, 1 - labels)
    first = bootstrap_interval(labels, preds, "f1_macro", 2, 1000, seed=3)
    assert first == bootstrap_interval(labels, preds, "f1_macro", 2, 1000, seed=3)
    assert first[0] < f1_macro(labels, preds, 2) < first[1]


def test_resample_statistics_match_sklearn_row_by_row():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, (200, 12))  # short rows, so some rows lack a class or two
    preds = np.where(rng.random((200, 12)) < 0.6, labels, rng.integers(0, 3, (200, 12)))
    labels[0], preds[0] = 1, 1  # one class present only
    labels[1], preds[1] = 0, 2  # two classes, no overlap
    np.testing.assert_allclose(
        f1_macro_of_resamples(labels, preds, 3), [f1_macro(y, p, 3) for y, p in zip(labels, preds, strict=True)], rtol=1e-12
    )
    np.testing.assert_allclose(
        accuracy_of_resamples(labels, preds, 3), [accuracy_score(y, p) for y, p in zip(labels, preds, strict=True)]
    )


@pytest.mark.parametrize("metric, one_at_a_time", [("accuracy", accuracy_score), ("f1_macro", lambda y, p: f1_macro(y, p, 3))])
def test_vectorised_bootstrap_equals_the_one_resample_at_a_time_one(metric, one_at_a_time):
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, 150)
    preds = np.where(rng.random(150) < 0.7, labels, rng.integers(0, 3, 150))
    looped = stats.bootstrap(
        (labels, preds),
        one_at_a_time,
        paired=True,
        vectorized=False,
        n_resamples=500,
        method="percentile",
        rng=np.random.default_rng(5),
    ).confidence_interval
    np.testing.assert_allclose(bootstrap_interval(labels, preds, metric, 3, 500, seed=5), [looped.low, looped.high], rtol=1e-12)


def test_auc_of_an_absent_class_is_null_with_a_reason():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1]])
    out = ranking(labels, probs, ["neg", "neu", "pos"])
    assert out["roc_auc"]["pos"] is None and "absent" in out["roc_auc"]["pos_note"]
    assert out["roc_auc"]["neg"] == 1.0


def test_classification_reports_positive_f1_for_binary():
    out = classification(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), ["neg", "pos"])
    assert out["accuracy"] == 0.75 and out["f1_positive"] == pytest.approx(2 / 3)
    assert out["confusion"] == [[2, 0], [1, 1]]


def test_write_results_writes_the_details_and_a_flat_headline(tmp_path, monkeypatch):
    from sentiment.io import write_results
    from sentiment.paths import metrics_file, results_file

    monkeypatch.chdir(tmp_path)
    details = {"models": {"finetune": {"test": {"accuracy": np.float64(0.8512345678)}}}, "note": "x"}
    write_results("toy", "evaluate", details, {"accuracy": 0.8512345678, "ece": None})
    assert json.loads(results_file("toy", "evaluate").read_text()) == {
        "models": {"finetune": {"test": {"accuracy": 0.851235}}},
        "note": "x",
    }
    assert json.loads(metrics_file("toy", "evaluate").read_text()) == {"accuracy": 0.851235, "ece": None}


@pytest.mark.parametrize(
    "headline, message",
    [({"test_accuracy": 0.9}, "not in sentiment.io.HEADLINE_KEYS"), ({"accuracy": {"test": 0.9}}, "must be numbers"),
     ({"accuracy": "0.9"}, "must be numbers"), ({"accuracy": True}, "must be numbers")],
)  # fmt: skip
def test_write_results_refuses_a_headline_outside_the_vocabulary_and_writes_nothing(tmp_path, monkeypatch, headline, message):
    from sentiment.io import write_results

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=message):
        write_results("toy", "evaluate", {"a": 1}, headline)
    assert not any(tmp_path.rglob("*.json"))


def test_write_results_leaves_neither_file_when_the_details_cannot_be_written(tmp_path, monkeypatch):
    from sentiment.io import write_results

    monkeypatch.chdir(tmp_path)
    with pytest.raises(TypeError):
        write_results("toy", "evaluate", {"a": object()}, {"accuracy": 0.9})
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_committed_metrics_files_hold_only_flat_headline_figures():
    from conftest import REPO
    from sentiment.io import HEADLINE_KEYS

    files = sorted((REPO / "metrics").glob("*/*.json"))
    assert files
    for path in files:
        headline = json.loads(path.read_text())
        assert set(headline) <= set(HEADLINE_KEYS), path
        assert all(v is None or isinstance(v, (int, float)) for v in headline.values()), path
        assert (REPO / "results" / path.parent.name / path.name).exists(), f"{path} has no results file beside it"
