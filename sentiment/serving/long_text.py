"""Texts longer than the model's `max_length`: truncate them, or score overlapping windows and average.

The windows come from the fast tokenizer itself (`return_overflowing_tokens` with `stride`, as
transformers' question-answering examples cut long contexts), so every window carries the model's own
special tokens; only the aggregation (mean of window logits per text) is written here. A text that fits
in one window gives one window, so `chunk` and `truncate` agree on short inputs.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, PositiveInt

from sentiment.config import Section
from sentiment.paths import MODELS

LongText = Literal["truncate", "chunk"]


class PredictConfig(Section):
    """params.yaml `predict`: how inference outside training reads text, and in what batches."""

    batch_size: PositiveInt  # texts (or windows) per model call of `sentiment predict`, behavior and external
    long_text: LongText  # truncate: first max_length tokens; chunk: overlapping windows, logits averaged
    window_overlap: float = Field(ge=0, le=0.5)  # share of max_length consecutive windows have in common
    model: Literal[MODELS]  # type: ignore[valid-type]  # what predict, explain and serve use by default

    def stride(self, max_length: int) -> int:
        """Tokens consecutive windows share (the tokenizer's `stride`)."""
        return int(self.window_overlap * max_length)


def windows(tokenizer, texts: list[str], max_length: int, cfg: PredictConfig) -> tuple[list[list[int]], np.ndarray]:
    """Token ids of every window and, per window, the index of the text it came from."""
    if cfg.long_text == "truncate" or not texts:
        ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
        return ids, np.arange(len(ids))
    encoded = tokenizer(
        list(texts), truncation=True, max_length=max_length, stride=cfg.stride(max_length), return_overflowing_tokens=True
    )
    return encoded["input_ids"], np.asarray(encoded["overflow_to_sample_mapping"])


def mean_per_text(window_logits: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Each text's mean logit over its windows."""
    sums = np.zeros((n, window_logits.shape[1]), dtype=np.float64)
    np.add.at(sums, owner, window_logits)
    return sums / np.bincount(owner, minlength=n)[:, None]
