"""Model cards from small hand-built results: the model-index names the split that was scored and the
language, the figures are the primary model's, each limitation follows from a figure, and the README's
clauses come from the same functions."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import yaml

from conftest import REPO
from sentiment.config import Params, UserError, load_params
from sentiment.models.baselines import label_order_correlation
from sentiment.report.cards import card_json, card_markdown, card_params, failing_tests, hub_metadata
from sentiment.report.readme import findings

PARAMS = load_params(REPO / "params.yaml")


def figures(accuracy: float, ece: float = 0.08, ece_scaled: float = 0.02) -> dict:
    return {
        "accuracy": accuracy,
        "f1_macro": accuracy - 0.01,
        "ci95": {"accuracy": [accuracy - 0.02, accuracy + 0.02], "f1_macro": [accuracy - 0.03, accuracy + 0.01]},
        "calibration": {"ece": ece},
        "calibration_scaled": {"ece": ece_scaled},
        "per_class": {"negative": {"f1": accuracy - 0.05}, "positive": {"f1": accuracy + 0.01}},
    }


def behavior_tests(rates: dict[str, float]) -> dict:
    return {
        name: {"failure_rate": rate, "ci95": [max(rate - 0.05, 0), rate + 0.05], "n": 40, "capability": "negation"}
        for name, rate in rates.items()
    }


AUROCS = {"uniform": 0.97, "class_conditional": 0.93}


def planted(auroc: float) -> dict:
    """A planted-noise report: 50 of 980 plantable rows; the all-rows ranking lower, as natural noise makes it."""
    ranking = {"auroc": auroc, "average_precision": auroc - 0.2, "recall_at_2x_budget": auroc - 0.05}
    return {
        "planted": 50,
        "fraction": 0.05,
        "plantable_rows": 980,
        "flagged": 60,
        "flagged_plantable": 45,
        "found": 40,
        "precision": 40 / 45,
        "recall": 0.8,
        "budget": 50,
        "precision_at_budget": 0.84,
        "recall_at_budget": 0.84,
        **ranking,
        "all_rows": {name: value - 0.1 for name, value in ranking.items()},
    }


def results(dev_accuracy: float = 0.90, temperature: float = 1.4, rates: dict[str, float] | None = None) -> dict:
    """The results files a card reads, as small as the card allows: a fine-tuned model at 0.85 on test, a
    TF-IDF baseline at 0.80."""
    rates = {"negated positive": 0.30, "typos": 0.10, "names swapped": 0.01} if rates is None else rates
    return {
        "label_issues": {
            "model": "tfidf",
            "folds": 5,
            "rows_audited": 1000,
            "natural_error_rate": 0.03,
            "flagged": 20,
            "flagged_rate": 0.02,
            "per_class": {"negative": {"flagged_rate": 0.02}, "positive": {"flagged_rate": 0.02}},
            "planted": {"seed": 0, "excluded_flagged_rows": 20, **{kind: planted(auroc) for kind, auroc in AUROCS.items()}},
        },
        "clean": {split: {"rows": rows, "dropped": {}} for split, rows in (("train", 1000), ("dev", 100), ("test", 200))},
        "finetune": {"best_epoch": 2.0, "dev": {"accuracy": dev_accuracy, "f1_macro": dev_accuracy}, "test": figures(0.85)},
        "evaluate": {
            "models": {
                "tfidf_lr": {"temperature": 0.7, "dev": figures(0.81), "test": figures(0.80)},
                "finetune": {"temperature": temperature, "dev": figures(dev_accuracy), "test": figures(0.85)},
            },
            "test_label_audit": {
                "test_rows": 200,
                "suspects": 8,
                "shown": 8,
                "reference": "finetune",
                "baseline": "tfidf_lr",
                "disputed_by_both": 6,
                "disputed_by_both_share": 0.75,
            },
        },
        "slices": {
            "finetune": {
                "all": {"n": 200, "accuracy": 0.85, "accuracy_delta": 0.0},
                "negation": {"n": 40, "accuracy": 0.70, "accuracy_delta": -0.15},
                "tiny": {"n": 5, "accuracy": 0.20, "accuracy_delta": -0.65},  # under 30 rows: not a limitation
            }
        },
        "export": {"forms": {"torch": {"accuracy": 0.85, "accuracy_delta_vs_torch": 0.0, "size_mb": 90.0}}},
        "behavior": {
            "models": {"finetune": {"tests": behavior_tests(rates)}, "tfidf_lr": {"tests": behavior_tests(rates)}},
            "skipped": {},
        },
    }


def params_for(key: str, **dataset) -> dict:
    params = copy.deepcopy(PARAMS)
    params["datasets"][key].update(dataset)
    return params


def model_index(key: str, params: dict, m: dict) -> dict:
    header = hub_metadata(card_params(key, Params(params)), m)
    return yaml.safe_load(header.strip().strip("-"))


def test_the_model_index_names_the_hub_split_that_was_scored():
    meta = model_index("sst2", PARAMS, results())
    splits = {r["dataset"]["split"] for entry in meta["model-index"] for r in entry["results"]}
    assert splits == {PARAMS["datasets"]["sst2"]["test_split"]} == {"validation"}
    assert meta["language"] == "en"
    card = card_markdown(
        card_params("sst2", Params(PARAMS)), results(), card_json(card_params("sst2", Params(PARAMS)), results())
    )
    assert "measured on the `validation` split of `stanfordnlp/sst2` (200 rows after cleaning)" in card


def test_a_pooled_dataset_says_the_split_is_the_projects_own():
    params = params_for("tweets", language="fr")
    meta = model_index("tweets", params, results())
    (split,) = {r["dataset"]["split"] for entry in meta["model-index"] for r in entry["results"]}
    assert split.startswith("own split") and f"{params['split']['pooled_test_fraction']:.0%}" in split
    assert meta["language"] == "fr"
    p = card_params("tweets", Params(params))
    card = card_markdown(p, results(), card_json(p, results()))
    assert "this project's own split, not one published with `mteb/tweet_sentiment_extraction`" in card


def test_no_language_param_leaves_the_header_without_one():
    params = params_for("sst2")
    del params["datasets"]["sst2"]["language"]
    assert "language" not in model_index("sst2", params, results())


def test_the_figures_are_the_primary_models():
    p = card_params("sst2", Params(PARAMS))
    card = card_json(p, results())
    assert card["metrics"]["test"]["accuracy"] == 0.85 and card["model_details"]["temperature"] == 1.4
    assert set(card["metrics"]["baselines_test"]) == {"tfidf_lr"}
    meta = model_index("sst2", PARAMS, results())
    values = {m["type"]: m["value"] for entry in meta["model-index"] for r in entry["results"] for m in r["metrics"]}
    assert values == {"accuracy": 0.85, "f1": 0.84}


def test_limitations_follow_from_the_figures():
    p = card_params("sst2", Params(PARAMS))
    notes = " ".join(card_json(p, results(dev_accuracy=0.90, temperature=1.4))["limitations"])
    assert "Weakest test slice with n ≥ 30: negation (n=40), accuracy 0.7000 (-0.1500 vs all)" in notes
    assert "Dev accuracy (0.9000) exceeds test (0.8500)" in notes and "over-confident" in notes
    assert "negated positive (30% of 40), typos (10% of 40)." in notes  # most often first; 1% is under the bar
    calm = " ".join(card_json(p, results(dev_accuracy=0.855, temperature=0.8, rates={"typos": 0.01}))["limitations"])
    assert "exceeds test" not in calm and "under-confident" in calm and "Behavioural tests it fails" not in calm


def test_the_readme_states_the_cards_figures(tmp_path):
    m = results()
    results_dir = tmp_path / "results" / "sst2"
    results_dir.mkdir(parents=True)
    for stage in ("behavior", "label_issues"):
        (results_dir / f"{stage}.json").write_text(json.dumps(m[stage]))
    clauses = findings("sst2", tmp_path)
    assert f"fails {len(failing_tests(m['behavior']))} of 3 behavioural tests at 5% or more" in clauses
    card_notes = " ".join(card_json(card_params("sst2", Params(PARAMS)), m)["limitations"])
    audit = next(c for c in clauses if "label audit" in c)
    assert audit in card_notes  # the one sentence, built once


def test_polarity_needs_labels_that_run_negative_to_positive():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    scores = (labels - 1) * 0.5 + rng.normal(0, 0.3, 300)  # a lexicon that agrees with the label order
    assert label_order_correlation(scores, labels, "toy") > 0.5
    with pytest.raises(UserError, match=r"datasets\.toy\.labels: polarity is true .* list the labels from negative"):
        label_order_correlation(-scores, labels, "toy")
    with pytest.raises(UserError, match="nan"):
        label_order_correlation(np.zeros(300), labels, "toy")


def test_every_audit_model_has_a_card_phrase():
    from typing import get_args

    from sentiment.evaluation.label_audit import LabelIssuesConfig
    from sentiment.report.cards import AUDIT_MODEL_WORDS

    assert set(AUDIT_MODEL_WORDS) == set(get_args(LabelIssuesConfig.model_fields["model"].annotation))


def test_the_card_states_the_audit_on_the_plantable_rows_and_the_suspects_for_review():
    p = card_params("sst2", Params(PARAMS))
    card = card_json(p, results())
    text = card_markdown(p, results(), card)
    assert "Labels are planted wrong only among the 980 rows not flagged on the given labels" in text
    assert (
        "(class-conditional), its label-quality score ranks them with AUROC 0.930; of the 50 rows it scores lowest, 84.0%" in text
    )
    assert "AUROC 0.97 (uniform flips) and 0.93 (class-conditional)" in text  # the plantable rows', not all rows' 0.87
    assert "8 of 200 test labels suspect, 75% of them labelled otherwise by both finetune and tfidf_lr" in text
    assert "`plots/sst2/evaluate/suspect_test_labels.csv`" in text
    assert not any(words in text for words in ("ceiling", "set aside", "without the suspects", "without suspects"))
    audit = card["label_audit"]
    assert audit["planted"]["class_conditional"]["auroc"] == 0.93 and audit["test_labels"]["disputed_by_both_share"] == 0.75
    shares = [v for kind in audit["planted"].values() for k, v in kind.items() if isinstance(v, float)]
    assert shares and all(0 <= v <= 1 for v in shares)  # no ratio above 1
