"""External sets: sources (local file, Hub mirror, NLTK corpus) read and mapped onto the model's labels,
bad specs rejected in one line, and the figures for a set with fewer labels than the model."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import repo_params
from sentiment.config import UserError
from sentiment.evaluation.external import ExternalConfig, ExternalSet, read_set, set_metrics

LABELS = ["negative", "neutral", "positive"]


@pytest.fixture
def local_csv(in_tmp) -> str:
    frame = pd.DataFrame({"review": [f"text {i}" for i in range(30)], "stars": [1, 3, 5] * 10})
    frame.to_csv("reviews.csv", index=False)
    return "reviews.csv"


def test_a_local_csv_is_mapped_onto_the_models_labels_and_other_rows_dropped(local_csv):
    spec = ExternalSet(source=local_csv, text_column="review", label_column="stars", label_map={1: "negative", 5: "positive"})
    frame, total = read_set("mine", spec, LABELS, seed=0)
    assert total == len(frame) == 20
    assert set(frame["label"]) == {0, 2} and frame["text"].tolist()[:2] == ["text 0", "text 2"]


def test_max_rows_is_a_seeded_sample_in_source_order(local_csv):
    spec = ExternalSet(
        source=local_csv, text_column="review", label_column="stars", label_map={1: "negative", 5: "positive"}, max_rows=8
    )
    first, total = read_set("mine", spec, LABELS, seed=0)
    assert total == 20 and len(first) == 8
    assert first.equals(read_set("mine", spec, LABELS, seed=0)[0])
    numbers = [int(t.split()[1]) for t in first["text"]]
    assert numbers == sorted(numbers)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"label_map": {1: "awful"}}, "which the model lacks"),
        ({"label_map": {2: "negative"}}, "no row has a label"),
        ({"text_column": "body"}, "no column 'body'"),
        ({"source": "missing.csv"}, "not found"),
    ],
)
def test_bad_specs_are_one_line_errors(local_csv, change, message):
    spec = ExternalSet(
        **{"source": local_csv, "text_column": "review", "label_column": "stars", "label_map": {1: "negative"}, **change}
    )
    with pytest.raises(UserError, match=message):
        read_set("mine", spec, LABELS, seed=0)


def test_the_mirrors_sst2_validation_split_is_a_hub_source():
    from conftest import MIRROR

    if not (MIRROR / "datasets" / "stanfordnlp" / "sst2").is_dir():
        pytest.skip("needs the offline Hub mirror")
    spec = ExternalSet(
        source="stanfordnlp/sst2", split="validation", text_column="sentence", label_map={0: "negative", 1: "positive"}
    )
    frame, total = read_set("sst2_test", spec, LABELS, seed=0)
    assert total == len(frame) == 872 and set(frame["label"]) == {0, 2}


def test_nltk_movie_reviews_is_a_categorised_corpus_source():
    root = os.environ.get("NLTK_DATA", "")
    if not (Path(root) / "corpora" / "movie_reviews").exists() and not (Path(root) / "corpora" / "movie_reviews.zip").exists():
        pytest.skip("needs NLTK movie_reviews under NLTK_DATA")
    spec = ExternalSet(source="nltk:movie_reviews", label_map={"neg": "negative", "pos": "positive"}, max_rows=50)
    frame, total = read_set("movie_reviews", spec, LABELS, seed=0)
    assert total == 2000 and len(frame) == 50
    assert frame["text"].str.split().str.len().median() > 300  # full-length reviews
    with pytest.raises(UserError, match="categorised"):
        read_set("x", spec.model_copy(update={"source": "nltk:stopwords"}), LABELS, seed=0)


def test_a_two_label_set_on_a_three_label_model_reports_predictions_outside_its_labels():
    labels = np.array([0, 0, 2, 2])
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.6, 0.3], [0.1, 0.1, 0.8]])
    cfg = ExternalConfig(**{**repo_params()["external"], "sets": {}})
    out = set_metrics(labels, probs.argmax(axis=1), probs, probs, [0, 2], cfg, seed=0)
    assert out["accuracy"] == 0.5 and out["predicted_outside_set_labels"] == 0.5
    assert out["accuracy_within_set_labels"] == 0.75  # row 1: positive 0.3 > negative 0.2, wrong
    low, high = out["accuracy_ci95"]
    assert low <= out["accuracy"] <= high and out["temperature_helps_ece"] is False
