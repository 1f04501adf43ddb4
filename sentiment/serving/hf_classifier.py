"""The fine-tuned classifier as a transformers model class, for `transformers.pipeline` and
`AutoModelForSequenceClassification` with `trust_remote_code=True` (the Hub's custom-code convention).

The export stage saves this file beside the weights, so it imports nothing from this project: any
encoder family transformers knows, mean or CLS pooling, a linear head, and the temperature fitted on
dev applied to the logits (the pipeline's probabilities are then `sentiment predict`'s)."""

from __future__ import annotations

import inspect
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class SentimentClassifierConfig(PretrainedConfig):
    model_type = "sentiment-pipeline-classifier"

    def __init__(self, encoder: dict | None = None, pooling: str = "mean", logit_temperature: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder or {}  # the encoder's own config.json, as a dict
        self.pooling = pooling
        self.logit_temperature = logit_temperature  # not `temperature`: transformers reads that as a generation setting


class SentimentClassifierModel(PreTrainedModel):
    """Encoder -> pooled sentence vector -> linear head; logits divided by the temperature."""

    config_class = SentimentClassifierConfig
    base_model_prefix = "encoder"

    def __init__(self, config: SentimentClassifierConfig):
        super().__init__(config)
        encoder = dict(config.encoder)
        self.encoder = AutoModel.from_config(AutoConfig.for_model(encoder.pop("model_type"), **encoder))
        self.head = nn.Linear(self.encoder.config.hidden_size, config.num_labels)
        self.encoder_inputs = set(inspect.signature(self.encoder.forward).parameters)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **_: object,
    ) -> SequenceClassifierOutput:
        extra = (
            {"token_type_ids": token_type_ids} if token_type_ids is not None and "token_type_ids" in self.encoder_inputs else {}
        )
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        if self.config.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return SequenceClassifierOutput(logits=self.head(pooled) / self.config.logit_temperature)


def save_for_transformers(model: nn.Module, tokenizer, labels: list[str], temperature: float, out: Path) -> None:
    """A folder `transformers.pipeline("text-classification", model=out, trust_remote_code=True)` loads:
    config.json with auto_map, model.safetensors, the tokenizer, and this file beside them. `model` is the
    project's classifier (sentiment.models.classifier.SentimentClassifier: encoder, pooling, head)."""
    SentimentClassifierConfig.register_for_auto_class()
    SentimentClassifierModel.register_for_auto_class("AutoModelForSequenceClassification")
    config = SentimentClassifierConfig(
        encoder=model.encoder.config.to_dict(),
        pooling=model.pooling,
        logit_temperature=temperature,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    packed = SentimentClassifierModel(config)
    packed.encoder.load_state_dict(model.encoder.state_dict())
    packed.head.load_state_dict(model.head.state_dict())
    packed.save_pretrained(out)
    tokenizer.save_pretrained(out)
