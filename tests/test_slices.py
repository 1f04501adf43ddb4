import numpy as np
import pandas as pd
import pytest

from sentiment.data.text import WordLists, has_any
from sentiment.evaluation.slicing import length_bucket, slice_masks, slice_table

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
    masks = slice_masks(texts, {"negation": {"not"}, "contrast": {"but"}}, [2, 3])
    assert {k: int(v.sum()) for k, v in masks.items()} == {
        "all": 4,
        "negation": 1,
        "contrast": 1,
        "length <=2": 2,
        "length 3-3": 1,
        "length 4+": 1,
    }
    frame = pd.DataFrame({"label": [0, 1, 1, 1], "pred": [1, 1, 1, 1]})
    rows = {r["slice"]: r for r in slice_table(frame, masks, 2, 1000, seed=0)}
    assert rows["all"]["accuracy"] == 0.75
    assert rows["negation"]["accuracy"] == 0.0 and rows["negation"]["accuracy_delta"] == -0.75
    assert np.isclose(rows["contrast"]["accuracy_delta"], 0.25)


def test_a_bare_no_in_params_is_a_word(tmp_path):
    from sentiment.config import load_params, section

    params_file = tmp_path / "params.yaml"
    params_file.write_text("words:\n  negation: [not, no, Never]\n  contrast: [but]\n")
    assert section(WordLists, load_params(params_file), "words").sets()["negation"] == {"not", "no", "never"}
    params_file.write_text("words:\n  negation: [not, 3]\n  contrast: [but]\n")
    with pytest.raises(Exception, match=r"invalid param words.negation.1=3"):
        section(WordLists, load_params(params_file), "words")
