"""params.yaml `model` (which encoder, its pooling and dropout, the from-scratch encoder's size), `train` (the
fine-tuning budget), `light` (the lighter budget of ablation cells and search trials) and `Recipe`, everything
fine-tuning reads; apart from the training code so that code reading the sections needs no torch."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import ConfigDict, Field, PositiveInt

from sentiment.config import Params, Section, UserError, validated
from sentiment.data.datasets import TrainRows
from sentiment.models.engine import Reading

SCRATCH = "scratch"
Pooling = Literal["cls", "mean"]


class ScratchSize(Section):
    hidden_size: PositiveInt
    num_layers: PositiveInt
    num_heads: PositiveInt
    intermediate_size: PositiveInt


class EncoderChoice(Section):
    """params.yaml `model`'s encoder, read without its pooling and dropout (an ablation cell sets its own)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    name: str
    tokenizer: str | None = None  # the scratch encoder's tokenizer; default: `name`'s
    scratch: ScratchSize


class HeadChoice(Section):
    """params.yaml `model`'s pooling and dropout, read without the encoder (the ablation summary's final config)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    pooling: Pooling
    dropout: int | float = Field(ge=0, le=1)  # an int stays one: ablation cell names spell it as dvc.yaml does


class ModelConfig(EncoderChoice, HeadChoice):
    """params.yaml `model`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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


class LightBudget(Section):
    """params.yaml `light`."""

    epochs: float = Field(gt=0)
    train_fraction: float = Field(gt=0, le=1)  # stratified share of train
    max_length: PositiveInt


@dataclass(frozen=True)
class Recipe:
    """What fine-tuning reads from params.yaml: the `model` and `train` sections, the seed, which train rows
    (`clean.drop_label_issues`) and how its dev/test predictions read long texts (`predict`)."""

    model: ModelConfig
    train: TrainConfig
    seed: int
    drop_label_issues: bool
    reading: Reading

    @classmethod
    def of(cls, params: Params, model: ModelConfig | None = None, seed: int | None = None) -> Recipe:
        """params.yaml's recipe; `model` and `seed` in place of its own, which are then not read."""
        return cls(
            model or params.section(ModelConfig, "model"),
            params.section(TrainConfig, "train"),
            params.seed if seed is None else seed,
            params.section(TrainRows, "clean").drop_label_issues,
            params.section(Reading, "predict"),
        )

    def light(self, budget: LightBudget, model: dict[str, Any] | None = None, **train: Any) -> Recipe:
        """This recipe on the light budget (its epochs and max_length) with the given model and train values."""
        update = {"epochs": budget.epochs, "max_length": budget.max_length, **train}
        return replace(
            self,
            model=validated(ModelConfig, {**self.model.model_dump(), **(model or {})}, "model"),
            train=validated(TrainConfig, {**self.train.model_dump(), **update}, "train"),
        )
