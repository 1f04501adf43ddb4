"""params.yaml `predict`: how `sentiment predict`, `serve` and the stages that score deployed forms read text
(the reading itself is sentiment.models.engine's)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, PositiveInt

from sentiment.models.engine import Reading
from sentiment.paths import MODELS


class BatchedReading(Reading):
    """params.yaml `predict`'s reading and batch size, read without its default model (the stages that score the
    deployed forms)."""

    batch_size: PositiveInt  # texts (or windows) per model call of `sentiment predict`, behavior and external


class PredictConfig(BatchedReading):
    """params.yaml `predict`: long texts read as `Reading` says, in batches of `batch_size` texts (or windows)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    model: Literal[MODELS]  # type: ignore[valid-type]  # what predict, explain and serve use by default
