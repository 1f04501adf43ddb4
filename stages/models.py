"""The classifier: any Hub encoder (or a small one from scratch) -> pooling -> dropout -> linear.

Saved as a lean inference directory: the encoder's `save_pretrained`, the tokenizer,
`head.safetensors` and `head.json` (pooling, labels, max_length). No optimizer state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, BertConfig, PreTrainedTokenizerBase
from transformers.modeling_outputs import SequenceClassifierOutput

from stages.common import StageError, require_choice
from stages.hub import load_pretrained

POOLINGS = ("cls", "mean")
SCRATCH = "scratch"


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token vectors that are not padding."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class SentimentClassifier(nn.Module):
    """Encoder + pooled sentence vector + dropout + linear head."""

    def __init__(self, encoder: nn.Module, num_labels: int, pooling: str = "cls", dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.pooling = require_choice("model.pooling", pooling, POOLINGS)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)

    @property
    def config(self):  # Trainer and accelerate read model.config
        return self.encoder.config

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool = False,
        inputs_embeds: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        if inputs_embeds is not None:  # used by attribution methods that perturb embeddings
            kwargs["inputs_embeds"] = inputs_embeds
        else:
            kwargs["input_ids"] = input_ids
        out = self.encoder(attention_mask=attention_mask, output_attentions=output_attentions, **kwargs)
        hidden = out.last_hidden_state
        pooled = hidden[:, 0] if self.pooling == "cls" else mean_pool(hidden, attention_mask)
        logits = self.head(self.dropout(pooled))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits, attentions=out.attentions)


def scratch_config(tokenizer: PreTrainedTokenizerBase, size: dict[str, Any], max_length: int) -> BertConfig:
    """A small BERT-style encoder (random init) over the pretrained model's tokenizer."""
    return BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=size["hidden_size"],
        num_hidden_layers=size["num_layers"],
        num_attention_heads=size["num_heads"],
        intermediate_size=size["intermediate_size"],
        max_position_embeddings=max(max_length, 64),
        pad_token_id=tokenizer.pad_token_id,
    )


def load_tokenizer(model_cfg: dict[str, Any]) -> PreTrainedTokenizerBase:
    name = model_cfg["tokenizer"] if model_cfg["name"] == SCRATCH else model_cfg["name"]
    return load_pretrained(AutoTokenizer, name)


def model_max_length(model_cfg: dict[str, Any], tokenizer: PreTrainedTokenizerBase) -> int:
    """The longest input the encoder accepts (position embeddings), for scratch: unlimited by design."""
    if model_cfg["name"] == SCRATCH:
        return 10**6
    config = load_pretrained(AutoConfig, model_cfg["name"])
    limits = [getattr(config, "max_position_embeddings", None), tokenizer.model_max_length]
    return min(v for v in limits if isinstance(v, int) and v > 0)


def build_model(
    model_cfg: dict[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    num_labels: int,
    max_length: int,
    attn_implementation: str = "sdpa",
) -> SentimentClassifier:
    """A fresh classifier: pretrained encoder from the Hub/mirror, or a scratch one when name is 'scratch'."""
    require_choice("model.pooling", model_cfg["pooling"], POOLINGS)
    if model_cfg["name"] == SCRATCH:
        config = scratch_config(tokenizer, model_cfg["scratch"], max_length)
        encoder = AutoModel.from_config(config, attn_implementation=attn_implementation)
    else:
        encoder = load_pretrained(AutoModel, model_cfg["name"], attn_implementation=attn_implementation)
    return SentimentClassifier(encoder, num_labels, model_cfg["pooling"], model_cfg["dropout"])


def save_classifier(model: SentimentClassifier, tokenizer: PreTrainedTokenizerBase, out: Path, meta: dict[str, Any]) -> None:
    """Write the lean inference directory (no optimizer state)."""
    model.encoder.save_pretrained(out)
    tokenizer.save_pretrained(out)
    save_file({k: v.contiguous() for k, v in model.head.state_dict().items()}, out / "head.safetensors")
    (out / "head.json").write_text(json.dumps({"pooling": model.pooling, **meta}, indent=2, sort_keys=True) + "\n")


def load_classifier(
    path: Path | str, attn_implementation: str = "sdpa"
) -> tuple[SentimentClassifier, PreTrainedTokenizerBase, dict[str, Any]]:
    """Load what save_classifier wrote; returns (model in eval mode, tokenizer, head metadata)."""
    path = Path(path)
    if not (path / "head.json").exists():
        raise StageError(f"no trained model at {path}")
    meta = json.loads((path / "head.json").read_text())
    encoder = AutoModel.from_pretrained(path, attn_implementation=attn_implementation)
    model = SentimentClassifier(encoder, len(meta["labels"]), meta["pooling"], 0.0)
    model.head.load_state_dict(load_file(path / "head.safetensors"))
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model.eval(), tokenizer, meta


def length_sorted_batches(sequences: list[list[int]], batch_size: int) -> list[np.ndarray]:
    """Row indices per batch, rows sorted by length (stable) so a padded batch wastes little compute.

    Shared by every batched inference path (prediction, faithfulness scoring, exported forms).
    """
    order = np.argsort([len(s) for s in sequences], kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


@torch.inference_mode()
def predict_logits(
    model: SentimentClassifier,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    max_length: int,
    batch_size: int = 128,
    bf16: bool = False,
    progress: bool = True,
) -> np.ndarray:
    """Logits for `texts` in their order, computed over length-sorted batches (little padding).

    Trainer.predict is not used here: with length-grouped sampling it returns rows in the
    sampler's shuffled order, and inference needs no Trainer machinery.
    """
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    logits = np.zeros((len(texts), model.head.out_features), dtype=np.float64)
    model.eval()
    for rows in tqdm(length_sorted_batches(encoded, batch_size), desc="predict", disable=not progress, leave=False):
        batch = tokenizer.pad({"input_ids": [encoded[i] for i in rows]}, return_tensors="pt").to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        logits[rows] = out.logits.float().cpu().numpy()
    return logits
