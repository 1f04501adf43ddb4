import numpy as np
import pandas as pd
import pytest

from sentiment.config import UserError
from sentiment.data.datasets import load_predictions, predictions_frame

NAMES = ["negative", "positive"]
SPLIT = pd.DataFrame({"id": ["a", "b", "c"], "text": ["x", "y", "z"], "label": [0, 1, 1]})


def write(tmp_path, frame):
    path = tmp_path / "p.csv"
    frame.to_csv(path, index=False)
    return path


def good():
    return predictions_frame(["c", "a", "b"], [1, 0, 1], np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]), NAMES)


def test_predictions_are_aligned_to_the_split_order(tmp_path):
    loaded = load_predictions(write(tmp_path, good()), SPLIT, NAMES)
    assert loaded["id"].tolist() == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.assign(id=["c", "a", "zz"]), "ids do not match"),
        (lambda f: f.iloc[:2], "ids do not match"),
        (lambda f: f.assign(prob_positive=0.5), "do not sum to 1"),
        (lambda f: f.drop(columns="prob_negative"), "missing columns"),
        (lambda f: f.assign(label=[0, 0, 0]), "labels differ"),
    ],
)
def test_bad_predictions_fail_clearly(tmp_path, mutate, message):
    with pytest.raises(UserError, match=message):
        load_predictions(write(tmp_path, mutate(good())), SPLIT, NAMES)


def test_the_stage_lists_the_suspect_test_labels_beside_the_baseline_never_in_place_of_the_headline(in_tmp):
    """Two test labels the fine-tuned model confidently disputes are suspects: counted, listed for a person
    beside the best baseline's label, with how many of them the baseline disputes too; the headline stays on
    every row and no accuracy without the suspects (circular: they are the model's errors) is reported."""
    import json

    import yaml

    from conftest import REPO, tiny_params, write_clean
    from sentiment.data.datasets import predictions_file
    from sentiment.stage import run_stage
    from stages import evaluate

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["datasets"] = tiny_params()["datasets"]
    params["evaluate"]["models"] = {"tfidf_lr": "baseline", "finetune": "finetune"}
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(params))
    rng = np.random.default_rng(0)
    splits = {}
    for split in ("dev", "test"):
        labels = np.array([0, 1] * 30)
        splits[split] = pd.DataFrame(
            {"id": [f"{split}{i}" for i in range(60)], "text": [f"t {i}" for i in range(60)], "label": labels}
        )
        confidence = rng.uniform(0.75, 0.95, 60)
        probs = np.where(labels[:, None] == np.arange(2), confidence[:, None], 1 - confidence[:, None])
        baseline = probs.copy()
        if split == "test":
            probs[[4, 7]] = [[0.02, 0.98], [0.97, 0.03]]  # confident disputes of the given labels 0 and 1
            baseline[[4, 9]] = [[0.3, 0.7], [0.6, 0.4]]  # the baseline disputes row 4 too, and row 9 alone
        for model, stage, p in (("finetune", "finetune", probs), ("tfidf_lr", "baseline", baseline)):
            path = in_tmp / predictions_file("toy", stage, model, split)
            path.parent.mkdir(parents=True, exist_ok=True)
            predictions_frame(splits[split]["id"], labels, p, NAMES, np.log(p)).to_csv(path, index=False)
    write_clean(in_tmp, "toy", {"train": splits["dev"], **splits})
    run_stage(evaluate.main, evaluate.__doc__, argv=["toy"])
    report = json.loads((in_tmp / "results/toy/evaluate.json").read_text())
    audit, headline = report["test_label_audit"], report["models"]["finetune"]["test"]
    assert headline["accuracy"] == pytest.approx(58 / 60)
    assert audit["suspects"] == 2 and audit["test_rows"] == 60 and audit["shown"] == 2
    assert (audit["reference"], audit["baseline"]) == ("finetune", "tfidf_lr")
    assert audit["disputed_by_both"] == 1 and audit["disputed_by_both_share"] == pytest.approx(0.5)
    assert "without_suspects" not in json.dumps(report)
    suspects = pd.read_csv(in_tmp / "plots/toy/evaluate/suspect_test_labels.csv")
    assert suspects["label_quality"].is_monotonic_increasing
    assert dict(zip(suspects["id"], suspects["baseline_label"], strict=True)) == {"test4": "positive", "test7": "positive"}
