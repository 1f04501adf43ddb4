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


def test_the_stage_audits_the_test_labels_beside_the_headline_never_in_place_of_it(in_tmp):
    """Two test labels the fine-tuned model confidently disputes are suspects: counted, listed for a person, and
    the accuracy without them is reported beside the headline, which stays on every row."""
    import json

    import yaml

    from conftest import REPO, tiny_params, write_clean
    from sentiment.data.datasets import predictions_file
    from sentiment.stage import run_stage
    from stages import evaluate

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["datasets"] = tiny_params()["datasets"]
    params["evaluate"]["models"] = {"finetune": "finetune"}
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
        if split == "test":
            probs[[4, 7]] = [[0.02, 0.98], [0.97, 0.03]]  # confident disputes of the given labels 0 and 1
        path = in_tmp / predictions_file("toy", "finetune", "finetune", split)
        path.parent.mkdir(parents=True, exist_ok=True)
        predictions_frame(splits[split]["id"], labels, probs, NAMES, np.log(probs)).to_csv(path, index=False)
    write_clean(in_tmp, "toy", {"train": splits["dev"], **splits})
    run_stage(evaluate.main, evaluate.__doc__, argv=["toy"])
    report = json.loads((in_tmp / "results/toy/evaluate.json").read_text())
    audit, headline = report["test_label_audit"], report["models"]["finetune"]["test"]
    assert audit["suspects"] >= 2 and audit["test_rows"] == 60
    assert headline["accuracy"] == pytest.approx(58 / 60) == pytest.approx(audit["accuracy"])
    assert audit["accuracy_without_suspects"] == pytest.approx(1.0)
    suspects = pd.read_csv(in_tmp / "plots/toy/evaluate/suspect_test_labels.csv")
    assert suspects["label_quality"].is_monotonic_increasing
    assert set(suspects["id"][:2]) == {"test4", "test7"}
