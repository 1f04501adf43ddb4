import numpy as np
import pandas as pd
import pytest

from stages.slices import has_any, length_bucket, slice_masks, slice_table

NEGATION = {"n't", "not", "no", "never", "nothing", "cannot", "without"}
CONTRAST = {"but", "however", "although", "yet"}


@pytest.mark.parametrize(
    ("text", "negation", "contrast"),
    [
        ("it does n't work", True, False),
        ("It doesn't work", True, False),
        ("I cannot believe it, but I like it", True, True),
        ("Nothing good here", True, False),
        ("a notable film , however long", False, True),  # "notable" is not "not"
        ("knowing it, yet", False, True),  # "knowing" is not "no"
        ("butter and jam", False, False),
        ("never again", True, False),
    ],
)
def test_word_slice_matchers(text, negation, contrast):
    assert has_any(text, NEGATION) is negation
    assert has_any(text, CONTRAST) is contrast


@pytest.mark.parametrize(("n", "bucket"), [(1, "<=4"), (4, "<=4"), (5, "5-8"), (16, "9-16"), (32, "17-32"), (33, "33+")])
def test_length_buckets_are_the_reference_runs(n, bucket):
    assert length_bucket(n, [4, 8, 16, 32]) == bucket


def test_slice_table_counts_and_deltas():
    texts = pd.Series(["not good", "good film indeed yes", "bad but fine", "great"])
    cfg = {"word_slices": {"negation": ["not"], "contrast": ["but"]}, "length_bounds": [2, 3], "bootstrap_resamples": 1000}
    masks = slice_masks(texts, cfg)
    assert {k: int(v.sum()) for k, v in masks.items()} == {
        "all": 4,
        "negation": 1,
        "contrast": 1,
        "length <=2": 2,
        "length 3-3": 1,
        "length 4+": 1,
    }
    frame = pd.DataFrame({"label": [0, 1, 1, 1], "pred": [1, 1, 1, 1]})
    rows = {r["slice"]: r for r in slice_table(frame, masks, cfg, seed=0)}
    assert rows["all"]["accuracy"] == 0.75
    assert rows["negation"]["accuracy"] == 0.0 and rows["negation"]["accuracy_delta"] == -0.75
    assert np.isclose(rows["contrast"]["accuracy_delta"], 0.25)


def test_a_bare_no_in_params_is_a_word(tmp_path):
    from stages.common import load_params
    from stages.slices import word_list

    params_file = tmp_path / "params.yaml"
    params_file.write_text("slices:\n  word_slices:\n    negation: [not, no, Never]\n")
    negation = load_params(params_file)["slices"]["word_slices"]["negation"]
    assert word_list("x", negation) == {"not", "no", "never"}
    with pytest.raises(Exception, match="invalid param x: 3 is not a word"):
        word_list("x", ["not", 3])
