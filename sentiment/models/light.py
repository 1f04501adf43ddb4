"""The light training budget shared by the ablation cells and the search trials (params.yaml `light`)."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import Field, PositiveInt

from sentiment.config import Section


class LightBudget(Section):
    epochs: float = Field(gt=0)
    train_fraction: float = Field(gt=0, le=1)  # stratified share of train
    max_length: PositiveInt


def with_overrides(
    params: dict[str, Any], budget: LightBudget, *, model: dict[str, Any] | None = None, **train: Any
) -> dict[str, Any]:
    """A copy of params.yaml with the light budget's epochs and max_length, and the given model/train values."""
    out = copy.deepcopy(params)
    out["train"].update(epochs=budget.epochs, max_length=budget.max_length, **train)
    out["model"].update(model or {})
    return out
