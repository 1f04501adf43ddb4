"""The training-label audit: flips are planted, found and scored; the stage writes its ranked list,
noise matrix and metrics; clean drops the flagged rows on request; evaluate reports its view of test."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, tiny_params, toy_sentiment
from sentiment.evaluation.label_audit import LabelIssuesConfig, flag_test_errors, flip_labels, issues, precision_recall
from sentiment.models.baselines import BaselineConfig, out_of_fold_probs
from sentiment.stage import run_stage
from stages import clean, label_issues

BASELINE = BaselineConfig.model_validate(
    {
        "tfidf": {"ngram_range": [1, 1], "min_df": 1, "max_df": 1.0, "sublinear_tf": True},
        "max_iter": 100,
        "tol": 1e-4,
        "grid": {"C": [1]},
        "cv_folds": 2,
    }
)
AUDIT = LabelIssuesConfig(folds=5, tfidf_C=4.0)


def test_flips_move_the_share_asked_to_another_class():
    labels = np.arange(300) % 3
    noisy, flipped = flip_labels(labels, 3, 0.1, seed=0)
    assert flipped.sum() == 30 and (noisy[flipped] != labels[flipped]).all() and (noisy[~flipped] == labels[~flipped]).all()
    again, _ = flip_labels(labels, 3, 0.1, seed=0)
    assert (again == noisy).all()


def test_planted_flips_are_found_with_high_precision_and_recall():
    train = toy_sentiment(400, seed=4)
    noisy, flipped = flip_labels(train["label"].to_numpy(), 2, 0.05, seed=1)
    probs = out_of_fold_probs(train["text_norm"], noisy, BASELINE, AUDIT.tfidf_C, AUDIT.folds, 0, 2)
    flagged, quality = issues(noisy, probs, AUDIT)
    scored = precision_recall(flagged, flipped)
    assert scored["flipped"] == 20
    assert scored["precision"] >= 0.8 and scored["recall"] >= 0.8, scored
    assert quality[flipped].mean() < quality[~flipped].mean()


def test_test_errors_the_rule_calls_mislabelled_are_counted_and_only_reported():
    labels = np.array([0, 1] * 20)
    probs = np.where(labels[:, None] == np.arange(2), 0.9, 0.1)
    probs[[0, 1]] = probs[[0, 1]][:, ::-1]  # two confident errors: labels the model confidently disputes
    analysis = pd.DataFrame(
        {"id": [str(i) for i in range(40)], "confidence": probs.max(axis=1), "correct": probs.argmax(axis=1) == labels}
    )
    flagged, view = flag_test_errors(labels, probs, analysis, AUDIT.model_copy(update={"top_errors": 5}))
    assert flagged[[0, 1]].all() and not flagged[2:].any()
    assert view["top_confident_errors"] == 2 and view["top_confident_errors_flagged"] == 2


@pytest.fixture
def split_with_flips(in_tmp):
    """params.yaml for the toy dataset and its split outputs, with 5% of train flipped."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["datasets"] = tiny_params()["datasets"]
    params["baseline"]["n_jobs"] = 1
    params["label_issues"].update(inject_fraction=0.05, shown=5)
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(params))
    out = in_tmp / "data" / "toy" / "split"
    out.mkdir(parents=True)
    train = toy_sentiment(400, seed=5).drop(columns="text_norm")
    train["id"] = [f"t{i}" for i in range(len(train))]
    noisy, flipped = flip_labels(train["label"].to_numpy(), 2, 0.05, seed=9)
    train = train.assign(label=noisy).drop_duplicates("text")
    train.to_parquet(out / "train.parquet")
    for split, seed in (("dev", 6), ("test", 7)):
        toy_sentiment(40, seed).drop(columns="text_norm").to_parquet(out / f"{split}.parquet")
    return in_tmp, set(train["id"][flipped[train.index]])


def test_the_stage_ranks_the_planted_flips_and_clean_drops_them_on_request(split_with_flips):
    root, planted = split_with_flips
    run_stage(label_issues.main, label_issues.__doc__, argv=["toy"])
    ranked = pd.read_csv(root / "data/toy/label_issues/issues.csv", dtype={"id": str})
    assert list(ranked.columns) == ["id", "text", "given_label", "suggested_label", "label_quality"]
    assert ranked["label_quality"].is_monotonic_increasing
    assert len(set(ranked["id"]) & planted) >= 0.8 * len(planted) and len(set(ranked["id"]) & planted) >= 0.8 * len(ranked)
    assert len(pd.read_csv(root / "plots/toy/label_issues/top_issues.csv")) == 5
    assert (root / "plots/toy/label_issues/noise_matrix.png").stat().st_size > 1000
    report = json.loads((root / "metrics/toy/label_issues.json").read_text())
    assert report["flagged"] == len(ranked) and set(report["per_class"]) == {"negative", "positive"}
    joint = report["joint_given_true"]
    assert abs(sum(v for row in joint.values() for v in row.values()) - 1) < 1e-6
    assert report["injected"]["flipped"] == round(0.05 * report["rows_audited"])

    run_stage(clean.main, clean.__doc__, argv=["toy"])
    assert len(pd.read_parquet(root / "data/toy/clean/train.parquet")) == report["rows_audited"]
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["clean"]["drop_label_issues"] = True
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    run_stage(clean.main, clean.__doc__, argv=["toy"])
    kept = pd.read_parquet(root / "data/toy/clean/train.parquet")
    assert len(kept) == report["rows_audited"] - len(ranked) and not set(kept["id"]) & set(ranked["id"])
    assert json.loads((root / "metrics/toy/clean.json").read_text())["train"]["dropped"]["label_issue"] == len(ranked)


def test_dropping_without_the_audit_names_the_missing_file(split_with_flips, capsys):
    root, _ = split_with_flips
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["clean"]["drop_label_issues"] = True
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(SystemExit):
        run_stage(clean.main, clean.__doc__, argv=["toy"])
    assert "error: missing input file: data/toy/label_issues/issues.csv" in capsys.readouterr().err
    assert not (root / "data/toy/clean").exists()


def test_encoder_out_of_fold_probabilities_come_from_models_that_never_saw_the_row(tokenizer):
    from sentiment.models.training import out_of_fold_probs as encoder_out_of_fold

    train = toy_sentiment(96, seed=8)
    labels = train["label"].to_numpy()
    probs = encoder_out_of_fold(train["text"], labels, tiny_params(epochs=6), folds=2, n_classes=2)
    assert probs.shape == (96, 2) and np.allclose(probs.sum(axis=1), 1)
    assert (probs.argmax(axis=1) == labels).mean() >= 0.9  # the toy task is learnable from the other fold
