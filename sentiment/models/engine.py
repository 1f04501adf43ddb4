"""The one scoring engine: texts -> token windows -> length-sorted padded batches -> a backend -> logits per text.

Every inference path runs through `score_logits` with a backend: training's dev/test predictions and distill's
teacher labels (torch), the export gate, `sentiment predict`/`serve` and the stages that score deployed forms
(sentiment.serving.runtime adds the ONNX Runtime and OpenVINO backends). Probabilities are
`sentiment.metrics.scale` of these logits, the one softmax.

Long texts: `truncate` keeps the first `max_length` tokens; `chunk` scores overlapping windows cut by the fast
tokenizer itself (`return_overflowing_tokens` with `stride`, as transformers' question-answering examples cut
long contexts) and averages their logits. A text that fits in one window gives one window, so both agree on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import ConfigDict, Field

from sentiment.config import Section

# (input_ids, attention_mask) as int64 arrays -> one output row per input row (logits, or pooled vectors)
Backend = Callable[[np.ndarray, np.ndarray], np.ndarray]
Batches = list[tuple[np.ndarray, dict[str, np.ndarray]]]
LongText = Literal["truncate", "chunk"]


class Reading(Section):
    """How inference reads a text longer than the model's max_length: params.yaml `predict.long_text` and
    `predict.window_overlap` (read without the rest of `predict`, which sentiment.serving validates)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    long_text: LongText  # truncate: first max_length tokens; chunk: overlapping windows, logits averaged
    window_overlap: float = Field(ge=0, le=0.5)  # share of max_length consecutive windows have in common

    def stride(self, max_length: int) -> int:
        """Tokens consecutive windows share (the tokenizer's `stride`)."""
        return int(self.window_overlap * max_length)


def windows(tokenizer: Any, texts: list[str], max_length: int, reading: Reading) -> tuple[list[list[int]], np.ndarray]:
    """Token ids of every window and, per window, the index of the text it came from."""
    if reading.long_text == "truncate" or not texts:
        ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
        return ids, np.arange(len(ids))
    encoded = tokenizer(
        list(texts), truncation=True, max_length=max_length, stride=reading.stride(max_length), return_overflowing_tokens=True
    )
    return encoded["input_ids"], np.asarray(encoded["overflow_to_sample_mapping"])


def mean_per_text(window_logits: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Each text's mean logit over its windows."""
    sums = np.zeros((n, window_logits.shape[1]), dtype=np.float64)
    np.add.at(sums, owner, window_logits)
    return sums / np.bincount(owner, minlength=n)[:, None]


def length_sorted_batches(sequences: list[list[int]], batch_size: int) -> list[np.ndarray]:
    """Row indices per batch, rows sorted by length (stable) so a padded batch wastes little compute."""
    order = np.argsort([len(s) for s in sequences], kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def padded_rows(tokenizer: Any, sequences: list[list[int]], rows: np.ndarray) -> dict[str, np.ndarray]:
    """int64 input_ids and attention_mask of `rows`, padded to their longest."""
    padded = tokenizer.pad({"input_ids": [sequences[i] for i in rows]}, return_tensors="np")
    return {k: padded[k].astype(np.int64) for k in ("input_ids", "attention_mask")}


def padded_batches(tokenizer: Any, sequences: list[list[int]], batch_size: int) -> Batches:
    """(row indices, int64 input_ids and attention_mask padded to the batch's longest row) per length-sorted batch."""
    return [(rows, padded_rows(tokenizer, sequences, rows)) for rows in length_sorted_batches(sequences, batch_size)]


def run_batches(run: Backend, batches: Batches, n: int) -> np.ndarray:
    """The backend's output for `n` rows, each batch's rows put back in place (float64)."""
    out = None
    for rows, arrays in batches:
        result = run(arrays["input_ids"], arrays["attention_mask"])
        if out is None:
            out = np.zeros((n, result.shape[1]), dtype=np.float64)
        out[rows] = result
    return np.zeros((0, 0)) if out is None else out


def torch_backend(model: Any, bf16: bool = False) -> Backend:
    """A torch module's logits (fp32; `bf16`: under bf16 autocast) on the device its parameters are on."""
    import torch

    on = next(model.parameters(), torch.empty(0)).device

    @torch.inference_mode()
    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        with torch.autocast(on.type, dtype=torch.bfloat16, enabled=bf16):
            ids, mask = torch.from_numpy(input_ids).to(on), torch.from_numpy(attention_mask).to(on)
            logits = model(input_ids=ids, attention_mask=mask).logits
        return logits.float().cpu().numpy()

    return run


def score_logits(
    run: Backend, tokenizer: Any, texts: list[str], max_length: int, batch_size: int, reading: Reading
) -> np.ndarray:
    """Logits per text, in order: windows as `reading` says, length-sorted batches of `batch_size` windows, the
    mean over each text's windows. With no text, an array of shape (0, 0)."""
    if not texts:
        return np.zeros((0, 0))
    ids, owner = windows(tokenizer, texts, max_length, reading)
    return mean_per_text(run_batches(run, padded_batches(tokenizer, ids, batch_size), len(ids)), owner, len(texts))
