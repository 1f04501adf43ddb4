"""The label audit: noise is planted of two kinds and found (ranking figures over the rows that could be
planted, precision and recall at a flag budget, nothing above 1), out-of-fold probabilities never come from
a model that saw the row or a text containing it, folds keep every phrase with its sentence, the stage
writes its ranked list and figures from clean's train, the training stages drop the flagged rows on
request, evaluate audits the test labels, and a `train.*` experiment leaves the audit alone."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, needs_mirror, tiny_params, toy_sentiment, write_clean
from sentiment.config import UserError, section
from sentiment.data.datasets import training_rows
from sentiment.evaluation.label_audit import (
    LabelIssuesConfig,
    at_budget,
    audit,
    audit_test_labels,
    fold_splits,
    grouped,
    issues,
    plant_class_conditional,
    plant_uniform,
    planted_report,
    ranking,
    shaped_noise_matrix,
    text_groups,
)
from sentiment.models.baselines import BaselineConfig
from sentiment.models.out_of_fold import tfidf_probs
from sentiment.stage import run_stage
from stages import label_issues

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
AUDIT = section(LabelIssuesConfig, PARAMS, "label_issues")
BASELINE = BaselineConfig.model_validate(
    {
        "tfidf": {"ngram_range": [1, 1], "min_df": 1, "max_df": 1.0, "max_features": None, "sublinear_tf": True},
        "solver": "liblinear",
        "n_jobs": 1,
        "max_iter": 100,
        "tol": 1e-4,
        "grid": {"C": [1]},
        "cv_folds": 2,
    }
)


def test_uniform_planting_moves_the_count_asked_among_eligible_rows_only():
    labels = np.arange(300) % 3
    eligible = np.arange(300) >= 30  # the first 30 rows stand for rows already flagged
    noisy = plant_uniform(labels, 3, 27, eligible, seed=0)
    moved = noisy != labels
    assert moved.sum() == 27 and not moved[:30].any()
    assert (plant_uniform(labels, 3, 27, eligible, seed=0) == noisy).all()


def test_class_conditional_planting_follows_the_noise_matrix():
    labels = np.arange(600) % 3
    # P(noisy | label): only neutral (1) moves, two thirds of it to negative (0), a third to positive (2)
    matrix = np.array([[1.0, 0.2, 0.0], [0.0, 0.7, 0.0], [0.0, 0.1, 1.0]])
    noisy = plant_class_conditional(labels, matrix, 60, np.ones(600, dtype=bool), seed=0)
    moved = noisy != labels
    assert moved.sum() == 60 and (labels[moved] == 1).all()
    assert 30 <= (noisy[moved] == 0).sum() <= 50 and (noisy[moved] == 2).sum() >= 10


def test_the_shaped_matrix_keeps_the_estimated_confusions_and_the_fraction():
    # estimated: negative and neutral confused both ways, positive -> neutral rarely, never negative <-> positive
    joint = np.array([[0.28, 0.04, 0.0], [0.02, 0.30, 0.01], [0.0, 0.01, 0.34]])
    prior = np.array([0.3, 0.35, 0.35])
    matrix = shaped_noise_matrix(joint, 0.05, prior)
    assert np.allclose(matrix.sum(axis=0), 1)
    assert matrix[2, 0] == 0 and matrix[0, 2] == 0
    assert matrix[0, 1] > matrix[2, 1] > 0  # neutral moves to negative more than to positive, as estimated
    assert (1 - np.diag(matrix)) @ prior == pytest.approx(0.05)


def fractions(report: dict) -> list[float]:
    """Every share in a planted report, its all-rows ranking included (counts left out)."""
    return [v for v in report.values() if isinstance(v, float)] + list(report["all_rows"].values())


def test_the_budget_figures_reach_1_for_a_perfect_detector_and_never_exceed_it():
    """At a budget of as many rows as were planted, a perfect score finds all of them; reversed, none; random
    scores about the planted share. Over random and real (noisy) detectors on synthetic data, with rows excluded
    from the planting, no share in the report ever exceeds 1."""
    rng = np.random.default_rng(0)
    planted = np.zeros(200, dtype=bool)
    planted[rng.choice(200, 10, replace=False)] = True
    perfect = np.where(planted, 0.1, 0.9)
    assert at_budget(perfect, planted) == {"budget": 10, "precision_at_budget": 1.0, "recall_at_budget": 1.0}
    assert at_budget(1 - perfect, planted)["precision_at_budget"] == 0
    chance = np.mean([at_budget(rng.random(200), planted)["precision_at_budget"] for _ in range(300)])
    assert chance == pytest.approx(0.05, abs=0.02)
    for seed in range(50):
        rng = np.random.default_rng(seed)
        plantable = rng.random(300) > 0.2
        planted = plantable & (rng.random(300) < 0.1)
        score = rng.random(300) - rng.uniform(0, 1) * planted  # from random (0) to nearly perfect (1)
        scored = planted_report(rng.random(300) < 0.15, score, planted, plantable)
        assert all(0 <= share <= 1 for share in fractions(scored)), scored
        assert scored["precision_at_budget"] == scored["recall_at_budget"] and scored["budget"] == scored["planted"]
    assert not any("ceiling" in name for name in scored)


def test_ranking_figures_score_the_order_not_the_flags():
    planted = np.zeros(100, dtype=bool)
    planted[:5] = True
    perfect = np.where(planted, 0.1, 0.9)
    assert ranking(perfect, planted) == {"auroc": 1.0, "average_precision": 1.0, "recall_at_2x_budget": 1.0}
    reversed_ = ranking(1 - perfect, planted)
    assert reversed_["auroc"] == 0 and reversed_["recall_at_2x_budget"] == 0
    report = planted_report(planted.copy(), perfect, planted, np.ones(100, dtype=bool))
    assert report["precision"] == report["recall"] == report["precision_at_budget"] == 1


def test_the_ranking_is_scored_on_the_rows_that_could_be_planted():
    """Rows excluded from the planting (flagged on the given labels) score lowest of all: over the plantable
    rows a score that puts the planted rows first has AUROC 1; over all rows the excluded ones count as false
    alarms and pull it down. The report keeps both, and refuses a planted row that was not plantable."""
    plantable = np.arange(100) >= 10  # rows 0-9: flagged on the given labels, never planted
    planted = np.isin(np.arange(100), [10, 20, 30, 40, 50])
    quality = np.where(planted, 0.2, 0.9)
    quality[:10] = 0.01  # natural errors: the lowest scores
    report = planted_report(np.zeros(100, dtype=bool), quality, planted, plantable)
    assert report["plantable_rows"] == 90
    assert report["auroc"] == report["average_precision"] == report["recall_at_2x_budget"] == 1
    assert report["precision_at_budget"] == 1
    assert report["all_rows"]["auroc"] == pytest.approx(1 - 10 / 95)  # each planted row ranks below the 10 excluded
    assert report["all_rows"]["recall_at_2x_budget"] == 0  # the 10 lowest-scored rows are the excluded ones
    with pytest.raises(ValueError, match="plantable"):
        planted_report(np.zeros(100, dtype=bool), quality, planted | (np.arange(100) == 0), plantable)


def oracle(rows: pd.DataFrame, labels: np.ndarray, folds) -> np.ndarray:
    """Out-of-fold probabilities from a model that knows each row's true class (`truth`), whatever the labels."""
    return np.where(rows["truth"].to_numpy()[:, None] == np.arange(3), 0.9, 0.05)


def test_the_audit_plants_and_scores_among_the_rows_not_flagged_on_the_given_labels():
    """Three classes, 30 natural errors the oracle disputes: the audit flags them and plants none there; the
    oracle ranks every planted row first among the plantable rows (AUROC 1, all found at the budget), while over
    all rows the natural errors, scored as low, pull the AUROC under 1."""
    truth = np.arange(600) % 3
    given = truth.copy()
    given[:30] = (truth[:30] + 1) % 3
    rows = pd.DataFrame({"id": [f"r{i}" for i in range(600)], "text": [f"text {i}" for i in range(600)], "label": given})
    cfg = AUDIT.model_copy(update={"inject_fraction": 0.05, "group_folds": False, "folds": 2})
    report, flagged, *_ = audit(rows.assign(truth=truth), ["a", "b", "c"], cfg, oracle, seed=0)
    assert flagged[:30].all() and not flagged[30:].any()
    for kind in ("uniform", "class_conditional"):
        planted = report["planted"][kind]
        assert planted["planted"] == 30 and planted["plantable_rows"] == 570, planted
        assert planted["auroc"] == planted["precision_at_budget"] == 1, planted
        assert planted["all_rows"]["auroc"] < 0.99, planted
        assert all(0 <= share <= 1 for share in fractions(planted)), planted


def test_planted_noise_on_separable_data_is_found_and_ranked_first():
    """The goal's thresholds, on data with no natural noise: AUROC at least 0.95 and recall at least 0.8."""
    train = toy_sentiment(400, seed=4)
    labels = train["label"].to_numpy()
    folds = fold_splits(labels, None, AUDIT.folds, 0)
    given_flags, _ = issues(labels, tfidf_probs(train["text_norm"], labels, BASELINE, 4.0, folds, 0, 2), AUDIT.filter_by)
    assert given_flags.mean() < 0.02  # clean labels: next to nothing flagged
    matrix = np.array([[0.9, 0.0], [0.1, 1.0]])  # class-conditional: only negatives turn positive
    for noisy in (
        plant_uniform(labels, 2, 20, ~given_flags, seed=1),
        plant_class_conditional(labels, matrix, 20, ~given_flags, seed=1),
    ):
        probs = tfidf_probs(train["text_norm"], noisy, BASELINE, 4.0, folds, 0, 2)
        flagged, quality = issues(noisy, probs, AUDIT.filter_by)
        scored = planted_report(flagged, quality, noisy != labels, ~given_flags)
        assert scored["planted"] == 20
        assert scored["auroc"] >= 0.95 and scored["recall"] >= 0.8 and scored["recall_at_2x_budget"] >= 0.9, scored
        assert scored["precision_at_budget"] >= 0.8, scored


def sst2_like() -> pd.DataFrame:
    """Two sentences with their phrases (one phrase in both), and a text that only shares a word's letters."""
    texts = [
        "a gorgeous , witty , seductive movie .",
        "witty",
        "gorgeous , witty",
        "seductive movie",
        "the plot is witty but thin",
        "but thin",
        "goodness",
        "good",
    ]
    return pd.DataFrame({"id": [f"p{i}" for i in range(len(texts))], "text": texts, "label": [1, 1, 1, 1, 0, 0, 1, 1]})


def test_a_phrase_belongs_to_the_longest_text_that_contains_it():
    groups = text_groups(sst2_like()["text"].tolist())
    # "witty" is in both sentences: the longer one (7 words) takes it; "good" is not a word of "goodness"
    assert groups.tolist() == [0, 0, 0, 0, 4, 4, 6, 7]
    assert text_groups(["Witty", "A  WITTY movie"]).tolist() == [1, 1]  # case and spacing do not matter


def test_grouped_folds_keep_every_phrase_with_its_sentence():
    rng = np.random.default_rng(0)
    sentences = [" ".join(rng.choice(["w" + str(i) for i in range(200)], 8)) + f" s{n}" for n in range(60)]
    rows = []
    for n, sentence in enumerate(sentences):
        words = sentence.split()
        rows += [{"text": sentence, "label": n % 2}] + [{"text": " ".join(words[a:]), "label": n % 2} for a in range(1, 6)]
    frame = pd.DataFrame(rows).drop_duplicates("text").reset_index(drop=True)
    groups = text_groups(frame["text"].tolist())
    assert grouped(AUDIT.model_copy(update={"group_folds": "auto"}), groups)
    sentence_of = {i: frame["text"][i].split()[-1] for i in range(len(frame))}
    assert all(sentence_of[i] == sentence_of[g] for i, g in enumerate(groups))  # a phrase's group is its sentence
    for fit, held in fold_splits(frame["label"].to_numpy(), groups, 5, seed=0):
        assert not set(groups[fit]) & set(groups[held])
    assert not grouped(AUDIT.model_copy(update={"group_folds": "auto"}), np.arange(100))
    assert not grouped(AUDIT.model_copy(update={"group_folds": False}), groups)


def test_out_of_fold_probabilities_never_come_from_a_model_that_saw_the_row():
    """Each row is its own word with a random label: a model that memorises fits every row in sample, so any
    leak of a held-out row into its fold's fit would show as accuracy near 1; out of fold it is chance."""
    rng = np.random.default_rng(0)
    texts = pd.Series([f"row{i} common" for i in range(400)])
    labels = rng.integers(0, 2, 400)
    memoriser = BASELINE.model_copy(update={"max_iter": 1000})
    in_sample = tfidf_probs(texts, labels, memoriser, 1e4, [(np.arange(400), np.arange(400))], 0, 2)
    assert (in_sample.argmax(axis=1) == labels).mean() == 1
    out_of_fold = tfidf_probs(texts, labels, memoriser, 1e4, fold_splits(labels, None, 5, 0), 0, 2)
    assert abs((out_of_fold.argmax(axis=1) == labels).mean() - 0.5) < 0.1


def test_grouped_folds_stop_a_sentence_leaking_through_its_phrases():
    """Rows of one group share a word and a random label: ungrouped folds leak the label through the group's
    other rows (accuracy near 1); grouped folds do not (chance)."""
    rng = np.random.default_rng(1)
    group_labels = rng.integers(0, 2, 80)
    texts = pd.Series([f"sentence{g} " + " ".join(["x"] * k) for g in range(80) for k in range(5)])
    labels = np.repeat(group_labels, 5)
    groups = text_groups(texts.tolist())
    accuracy = {}
    for name, by in (("ungrouped", None), ("grouped", groups)):
        probs = tfidf_probs(texts, labels, BASELINE, 4.0, fold_splits(labels, by, 5, 0), 0, 2)
        accuracy[name] = (probs.argmax(axis=1) == labels).mean()
    assert accuracy["ungrouped"] > 0.95 and abs(accuracy["grouped"] - 0.5) < 0.15, accuracy


def test_test_labels_the_model_confidently_disputes_are_suspects_listed_beside_the_baselines_label():
    test = pd.DataFrame({"id": [f"t{i}" for i in range(40)], "text": [f"text {i}" for i in range(40)], "label": [0, 1] * 20})
    labels = test["label"].to_numpy()
    probs = np.where(labels[:, None] == np.arange(2), 0.9, 0.1)
    probs[[0, 1]] = probs[[0, 1]][:, ::-1]  # two labels the model confidently disputes
    probs[2] = [0.45, 0.55]  # an unsure error
    baseline = labels.copy()
    baseline[[1, 5]] = 1 - labels[[1, 5]]  # the baseline disputes one suspect and one row nobody suspects
    names = ["negative", "positive"]
    flagged, suspects, report = audit_test_labels(test, probs, names, AUDIT.filter_by, ("tfidf_lr", baseline))
    assert flagged[[0, 1]].all() and not flagged[3:].any()
    assert report["suspects"] == flagged.sum() and report["baseline"] == "tfidf_lr"
    assert report["disputed_by_both"] == 1 and report["disputed_by_both_share"] == pytest.approx(1 / report["suspects"])
    assert not {"accuracy", "accuracy_without_suspects"} & set(report)  # circular: the suspects are the model's errors
    assert set(suspects["id"][:2]) == {"t0", "t1"}
    assert list(suspects.columns) == ["id", "text", "given_label", "suggested_label", "baseline_label", "label_quality"]
    by_id = suspects.set_index("id")
    assert (by_id.loc["t0", "baseline_label"], by_id.loc["t1", "baseline_label"]) == ("negative", "negative")
    _, alone, report = audit_test_labels(test, probs, names, AUDIT.filter_by)
    assert "baseline_label" not in alone and report["disputed_by_both"] is None


@pytest.fixture
def clean_with_flips(in_tmp):
    """params.yaml for the toy dataset and clean's outputs, with 5% of train flipped."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["datasets"] = tiny_params()["datasets"]
    params["baseline"]["n_jobs"] = 1
    params["label_issues"].update(inject_fraction=0.05, shown=5)
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(params))
    train = toy_sentiment(400, seed=5).drop_duplicates("text").reset_index(drop=True)
    train["id"] = [f"t{i}" for i in range(len(train))]
    labels = train["label"].to_numpy()
    noisy = plant_uniform(labels, 2, round(0.05 * len(train)), np.ones(len(train), dtype=bool), seed=9)
    write_clean(in_tmp, "toy", {"train": train.assign(label=noisy), "dev": toy_sentiment(40, 6), "test": toy_sentiment(40, 7)})
    return in_tmp, set(train["id"][noisy != labels])


def test_the_stage_ranks_the_flips_and_scores_both_kinds_of_planted_noise(clean_with_flips):
    root, flipped = clean_with_flips
    run_stage(label_issues.main, label_issues.__doc__, argv=["toy"])
    ranked = pd.read_csv(root / "data/toy/label_issues/issues.csv", dtype={"id": str})
    assert list(ranked.columns) == ["id", "text", "given_label", "suggested_label", "label_quality"]
    assert ranked["label_quality"].is_monotonic_increasing
    found = len(set(ranked["id"]) & flipped)
    assert found >= 0.8 * len(flipped) and found >= 0.8 * len(ranked)
    assert len(pd.read_csv(root / "plots/toy/label_issues/top_issues.csv")) == 5
    assert (root / "plots/toy/label_issues/noise_matrix.png").stat().st_size > 1000
    report = json.loads((root / "results/toy/label_issues.json").read_text())
    headline = json.loads((root / "metrics/toy/label_issues.json").read_text())
    assert headline["flagged"] == report["flagged"] == len(ranked) and set(report["per_class"]) == {"negative", "positive"}
    joint = report["joint_given_true"]
    assert abs(sum(v for row in joint.values() for v in row.values()) - 1) < 1e-6
    assert report["natural_error_rate"] == pytest.approx(1 - joint["negative"]["negative"] - joint["positive"]["positive"])
    assert not report["grouped_folds"]  # toy texts do not contain one another often enough for `auto`
    for kind in ("uniform", "class_conditional"):
        planted = report["planted"][kind]
        assert planted["planted"] == round(0.05 * report["rows_audited"]), kind
        assert planted["plantable_rows"] == report["rows_audited"] - report["flagged"], kind
        assert planted["auroc"] >= 0.9 and planted["recall_at_2x_budget"] >= 0.8, (kind, planted)
        assert all(0 <= share <= 1 for share in fractions(planted)), (kind, planted)
    assert "ceiling" not in json.dumps(report) and "precision_beyond_natural_issues" not in json.dumps(report)
    cc = report["planted"]["class_conditional"]
    uniform = report["planted"]["uniform"]
    # the headline's figures are those over the plantable rows, each under the name of what it is
    assert headline == {
        "flagged": report["flagged"],
        "auroc": cc["auroc"],
        "auroc_uniform": uniform["auroc"],
        "precision_at_budget": cc["precision_at_budget"],
    }


def test_training_rows_drop_the_flagged_rows_only_when_asked(clean_with_flips):
    root, _ = clean_with_flips
    with pytest.raises(UserError, match="missing input file: data/toy/label_issues/issues.csv"):
        training_rows("toy", drop_label_issues=True)
    run_stage(label_issues.main, label_issues.__doc__, argv=["toy"])
    flagged = set(pd.read_csv(root / "data/toy/label_issues/issues.csv", dtype={"id": str})["id"])
    everything = training_rows("toy", drop_label_issues=False)
    kept = training_rows("toy", drop_label_issues=True)
    assert len(everything) == len(pd.read_parquet(root / "data/toy/clean/train.parquet"))
    assert len(kept) == len(everything) - len(flagged) and not set(kept["id"]) & flagged


def test_encoder_out_of_fold_probabilities_come_from_models_that_never_saw_the_row(tokenizer):
    from sentiment.models.config import ModelConfig
    from sentiment.models.out_of_fold import encoder_probs
    from sentiment.models.training import TrainConfig

    params = tiny_params(epochs=6)
    train = toy_sentiment(96, seed=8)
    labels = train["label"].to_numpy()
    model_cfg, train_cfg = ModelConfig.model_validate(params["model"]), TrainConfig.model_validate(params["train"])
    probs = encoder_probs(train["text"], labels, model_cfg, train_cfg, fold_splits(labels, None, 2, 7), 7, 2)
    assert probs.shape == (96, 2) and np.allclose(probs.sum(axis=1), 1)
    assert (probs.argmax(axis=1) == labels).mean() >= 0.9  # the toy task is learnable from the other fold


@needs_mirror
@pytest.mark.slow
@pytest.mark.xdist_group("dvc")
def test_a_train_experiment_does_not_rerun_the_audit(tiny_repo):
    from dvc_tiny import KEYS, set_param, would_run

    set_param(tiny_repo, "train", "learning_rate", 0.001)
    changed = would_run(tiny_repo)
    assert {f"finetune@{k}" for k in KEYS} <= changed
    assert not {s for s in changed if s.startswith("label_issues@")}


@needs_mirror
def test_the_embeddings_audit_embeds_once_and_ranks_planted_flips_first(monkeypatch):
    """`label_issues.model: embeddings`: the frozen encoder embeds the rows once for the given and the planted
    labels, and logistic regression on its embeddings ranks uniform flips of a separable task first."""
    from sentiment.models import out_of_fold

    calls = []
    embed = out_of_fold.sentence_embeddings
    monkeypatch.setattr(out_of_fold, "sentence_embeddings", lambda texts, cfg: calls.append(len(texts)) or embed(texts, cfg))
    train = toy_sentiment(300, seed=5)
    labels = train["label"].to_numpy()
    folds = fold_splits(labels, None, AUDIT.folds, 0)
    probs_of = out_of_fold.fold_model("embeddings", 0, 2, embeddings=AUDIT.embeddings)
    given_flags, _ = issues(labels, probs_of(train, labels, folds), AUDIT.filter_by)
    noisy = plant_uniform(labels, 2, 15, ~given_flags, seed=2)
    probs = probs_of(train, noisy, folds)
    assert calls == [300]  # the second fit reused the embeddings
    assert probs.shape == (300, 2) and np.allclose(probs.sum(axis=1), 1)
    flagged, quality = issues(noisy, probs, AUDIT.filter_by)
    scored = planted_report(flagged, quality, noisy != labels, ~given_flags)
    assert scored["auroc"] >= 0.95 and scored["recall_at_2x_budget"] >= 0.8, scored
