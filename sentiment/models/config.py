"""params.yaml `model`: which encoder, its pooling and dropout, and the from-scratch encoder's size
(apart from sentiment.models.classifier so that code reading the section needs no torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from sentiment.config import Section, UserError

SCRATCH = "scratch"
Pooling = Literal["cls", "mean"]


class ScratchSize(Section):
    hidden_size: PositiveInt
    num_layers: PositiveInt
    num_heads: PositiveInt
    intermediate_size: PositiveInt


class ModelConfig(Section):
    """params.yaml `model`."""

    name: str
    pooling: Pooling
    dropout: float = Field(ge=0, le=1)
    tokenizer: str | None = None  # the scratch encoder's tokenizer; default: `name`'s
    scratch: ScratchSize

    def tokenizer_name(self) -> str:
        if self.name != SCRATCH:
            return self.name
        if not self.tokenizer:
            raise UserError("invalid param model.tokenizer=None: model.name=scratch needs a tokenizer id")
        return self.tokenizer
