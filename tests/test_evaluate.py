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
