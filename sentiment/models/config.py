"""params.yaml `model` (which encoder, its pooling and dropout, the from-scratch encoder's size) and `train`
(the fine-tuning budget), apart from the training code so that code reading the sections needs no torch."""

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


class TrainConfig(Section):
    """params.yaml `train`."""

    epochs: float = Field(gt=0, le=1000)
    learning_rate: float = Field(gt=0, le=1)
    batch_size: PositiveInt
    eval_batch_size: PositiveInt
    grad_accum: PositiveInt
    weight_decay: float = Field(ge=0)
    warmup_ratio: float = Field(ge=0, lt=1)
    max_grad_norm: float = Field(gt=0)
    label_smoothing: float = Field(ge=0, le=1)
    freeze_embeddings: bool  # word embeddings stay as pre-trained
    max_length: int = Field(ge=2)
    precision: Literal["auto", "bf16", "fp16", "fp32"]
    torch_compile: bool
    best_metric: Literal["loss", "accuracy", "f1_macro"]
    early_stopping_patience: int = Field(ge=0)
    logging_steps: PositiveInt
