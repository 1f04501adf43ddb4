"""The classifier: any Hub encoder (or a small one from scratch) -> pooling -> dropout -> linear.

Saved as a lean inference directory: the encoder's `save_pretrained`, the tokenizer,
`head.safetensors` and `head.json` (pooling, labels, max_length). No optimizer state.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, BertConfig, PretrainedConfig, PreTrainedTokenizerBase
from transformers.modeling_outputs import SequenceClassifierOutput

from sentiment.config import UserError
from sentiment.data.hub import load_pretrained
from sentiment.io import model_digest, write_json
from sentiment.models.config import SCRATCH, ModelConfig, Pooling, ScratchSize


def device() -> torch.device:
    """The accelerator when there is one (CUDA, MPS, …), else the CPU."""
    accelerator = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
    return accelerator or torch.device("cpu")


def attention_implementation(config: PretrainedConfig, need_weights: bool = False) -> str:
    """The fastest attention kernel the family supports: flash-attention 2 on a GPU where installed,
    else PyTorch SDPA, else eager. Eager where attention weights are read (`output_attentions`),
    since only it returns them. DeBERTa, MPNet and other families have no SDPA path."""
    if need_weights:
        return "eager"
    try:
        model_class = AutoModel._model_mapping[type(config)]
    except KeyError:
        return "eager"
    if (
        torch.cuda.is_available()
        and importlib.util.find_spec("flash_attn")
        and getattr(model_class, "_supports_flash_attn", False)
    ):
        return "flash_attention_2"
    return "sdpa" if getattr(model_class, "_supports_sdpa", False) else "eager"


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token vectors that are not padding."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class SentimentClassifier(nn.Module):
    """Encoder + pooled sentence vector + dropout + linear head."""

    def __init__(self, encoder: nn.Module, num_labels: int, pooling: Pooling = "cls", dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)
        self.encoder_inputs = set(inspect.signature(encoder.forward).parameters)

    @property
    def config(self):  # Trainer and accelerate read model.config
        return self.encoder.config

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool = False,
        inputs_embeds: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        # token types and positions only where the family takes them (DistilBERT and ModernBERT have no
        # token types, DistilBERT no position ids); attribution passes both explicitly
        optional = {"token_type_ids": token_type_ids, "position_ids": position_ids}
        kwargs = {k: v for k, v in optional.items() if v is not None and k in self.encoder_inputs}
        if inputs_embeds is not None:  # attribution methods perturb the embeddings
            kwargs["inputs_embeds"] = inputs_embeds
        else:
            kwargs["input_ids"] = input_ids
        if output_attentions:
            kwargs["output_attentions"] = True
        out = self.encoder(attention_mask=attention_mask, **kwargs)
        hidden = out.last_hidden_state
        pooled = hidden[:, 0] if self.pooling == "cls" else mean_pool(hidden, attention_mask)
        logits = self.head(self.dropout(pooled))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits, attentions=out.attentions if output_attentions else None)


def scratch_config(tokenizer: PreTrainedTokenizerBase, size: ScratchSize, max_length: int) -> BertConfig:
    """A small BERT-style encoder (random init) over a pretrained model's tokenizer."""
    return BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden_size,
        num_hidden_layers=size.num_layers,
        num_attention_heads=size.num_heads,
        intermediate_size=size.intermediate_size,
        max_position_embeddings=max(max_length, 64),
        pad_token_id=tokenizer.pad_token_id,
    )


def load_tokenizer(cfg: ModelConfig) -> PreTrainedTokenizerBase:
    tokenizer = load_pretrained(AutoTokenizer, cfg.tokenizer_name())
    if tokenizer.pad_token is None:  # decoder-style vocabularies: pad with the end-of-sequence token
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.sep_token
    return tokenizer


def model_max_length(cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase) -> int:
    """The longest input the encoder accepts (position embeddings); unlimited for scratch."""
    if cfg.name == SCRATCH:
        return 10**6
    config = load_pretrained(AutoConfig, cfg.name)
    limits = [getattr(config, "max_position_embeddings", None), tokenizer.model_max_length]
    return min(v for v in limits if isinstance(v, int) and v > 0)


def build_model(cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase, num_labels: int, max_length: int) -> SentimentClassifier:
    """A fresh classifier: pretrained encoder from the Hub/mirror, or a scratch one when name is 'scratch'."""
    if cfg.name == SCRATCH:
        config = scratch_config(tokenizer, cfg.scratch, max_length)
        encoder = AutoModel.from_config(config, attn_implementation=attention_implementation(config))
    else:
        config = load_pretrained(AutoConfig, cfg.name)
        encoder = load_pretrained(AutoModel, cfg.name, attn_implementation=attention_implementation(config))
    return SentimentClassifier(encoder, num_labels, cfg.pooling, cfg.dropout)


def save_classifier(model: SentimentClassifier, tokenizer: PreTrainedTokenizerBase, out: Path, meta: dict[str, Any]) -> None:
    """Write the lean inference directory (no optimizer state). head.json is what serving reads of the model:
    pooling, labels, max_length, `meta` (which model, its dev temperature and test figures) and the digest of
    the weight files (sentiment.io.model_digest), which bench records name."""
    model.encoder.save_pretrained(out)
    tokenizer.save_pretrained(out)
    save_file({k: v.contiguous() for k, v in model.head.state_dict().items()}, out / "head.safetensors")
    head = {"pooling": model.pooling, **meta, "digest": model_digest(out)}
    write_json(out / "head.json", head)


def load_classifier(
    path: Path | str, *, need_attention_weights: bool = False, on: torch.device | str | None = None
) -> tuple[SentimentClassifier, PreTrainedTokenizerBase, dict[str, Any]]:
    """Load what save_classifier wrote: (model in eval mode on `on`, default the accelerator, tokenizer, head metadata)."""
    path = Path(path)
    if not (path / "head.json").exists():
        raise UserError(f"no trained model at {path}")
    meta = json.loads((path / "head.json").read_text())
    config = AutoConfig.from_pretrained(path)
    encoder = AutoModel.from_pretrained(path, attn_implementation=attention_implementation(config, need_attention_weights))
    model = SentimentClassifier(encoder, len(meta["labels"]), meta["pooling"], 0.0)
    model.head.load_state_dict(load_file(path / "head.safetensors"))
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model.eval().to(on or device()), tokenizer, meta
