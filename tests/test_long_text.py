"""Long texts: windows cover every token with the configured overlap, `chunk` equals `truncate` on
short inputs, and a long input's score is the mean of its windows' logits."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from conftest import repo_cleaning, repo_params
from sentiment.models.engine import mean_per_text, windows
from sentiment.serving.long_text import PredictConfig


def reading_with(**changes) -> PredictConfig:
    """params.yaml's `predict` in batches of 8, with `changes`."""
    return PredictConfig(**{**repo_params()["predict"], "batch_size": 8, **changes})


CHUNK = reading_with(long_text="chunk", window_overlap=0.25)
TRUNCATE = reading_with(long_text="truncate")


def test_short_texts_give_one_window_each_the_same_as_truncation(tokenizer):
    texts = ["a lovely film", "not good at all", "fine"]
    (chunk_ids, chunk_owner), (ids, owner) = windows(tokenizer, texts, 32, CHUNK), windows(tokenizer, texts, 32, TRUNCATE)
    assert chunk_ids == ids and chunk_owner.tolist() == owner.tolist() == [0, 1, 2]


def test_long_texts_are_covered_by_overlapping_windows(tokenizer):
    long = " ".join(f"word{i}" for i in range(120))
    ids, owner = windows(tokenizer, ["short one", long], 32, CHUNK)
    assert owner[0] == 0 and (owner[1:] == 1).all() and len(owner) > 3
    body = tokenizer(long, add_special_tokens=False)["input_ids"]
    inner = [w[1:-1] for w in ids[1:]]  # without [CLS] and [SEP]
    assert all(len(w) <= 32 for w in ids)
    stride = CHUNK.stride(32)
    for first, second in zip(inner, inner[1:], strict=False):
        assert first[-stride:] == second[:stride]  # consecutive windows share `stride` tokens
    rebuilt = inner[0] + [t for w in inner[1:] for t in w[stride:]]
    assert rebuilt == body  # every token is scored, in order


def test_mean_per_text_averages_each_texts_windows():
    logits = np.array([[1.0, 0.0], [0.0, 2.0], [2.0, 2.0], [4.0, 0.0]])
    out = mean_per_text(logits, np.array([0, 1, 1, 1]), 2)
    assert np.allclose(out, [[1.0, 0.0], [2.0, 4 / 3]])


def test_overlap_is_validated():
    with pytest.raises(ValidationError):
        reading_with(window_overlap=0.6)
    with pytest.raises(ValidationError):
        reading_with(batch_size=0)
    assert reading_with(window_overlap=0.0).stride(128) == 0


def test_the_scorer_in_chunk_mode_equals_truncate_on_short_texts_and_averages_long_ones(saved_model):
    from sentiment.serving.runtime import FinetuneScorer

    chunk, truncate = (FinetuneScorer("toy", "torch", repo_cleaning(), reading, 8) for reading in (CHUNK, TRUNCATE))
    short = ["a lovely film", "dull", "not bad"]
    assert np.allclose(chunk.logits(short), truncate.logits(short), atol=1e-6)
    long = " ".join(["good"] * 10 + ["bad"] * 30)
    ids, _ = windows(chunk.tokenizer, [long], 16, CHUNK)
    assert len(ids) > 2
    by_window = [truncate.logits([chunk.tokenizer.decode(w, skip_special_tokens=True)])[0] for w in ids]
    assert np.allclose(chunk.logits([long])[0], np.mean(by_window, axis=0), atol=1e-4)
    assert not np.allclose(chunk.logits([long]), truncate.logits([long]))
