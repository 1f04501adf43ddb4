"""Knowledge distillation: a student that keeps some of the fine-tuned teacher's layers (initialised from them,
with the teacher's embeddings, tokenizer, pooling and head), trained on the teacher's temperature-softened
probabilities and the labels (Hinton et al. 2015; DistilBERT's initialisation), on fine-tuning's Trainer path:
bf16 where the hardware has it, the best dev epoch kept, early stopping, resumable checkpoints, live metrics."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field, PositiveInt
from torch import nn
from transformers import Trainer, set_seed

from sentiment.config import Section, UserError
from sentiment.data.datasets import read_clean
from sentiment.metrics import accuracy_and_f1
from sentiment.models.classifier import SentimentClassifier, load_classifier, save_classifier
from sentiment.models.config import TrainConfig
from sentiment.models.engine import Reading, score_logits, torch_backend
from sentiment.models.training import (
    best_epoch,
    precision_flags,
    reference_predictions,
    served_facts,
    tokenize,
    train,
    trained_with,
    training_curves,
)
from sentiment.paths import HELD_OUT


class DistillConfig(Section):
    """params.yaml `distill`."""

    datasets: list[str]
    layers: list[int] = Field(min_length=1)  # the teacher's layers the student keeps, in order
    temperature: float = Field(gt=0, le=100)  # softens both models' logits in the distillation term
    soft_weight: float = Field(ge=0, le=1)  # weight of the distillation term; the rest is cross-entropy with labels
    epochs: float = Field(gt=0, le=1000)
    learning_rate: float = Field(gt=0, le=1)
    batch_size: PositiveInt


def layer_stack(encoder: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    """(parent, attribute, the encoder's list of transformer layers): the one ModuleList as long as the
    config's num_hidden_layers (BERT's encoder.layer, DistilBERT's transformer.layer, ModernBERT's layers)."""
    depth = encoder.config.num_hidden_layers
    for module in encoder.modules():
        for attribute, child in module.named_children():
            if isinstance(child, nn.ModuleList) and len(child) == depth:
                return module, attribute, child
    raise UserError(f"{type(encoder).__name__} has no list of {depth} layers to distil from")


def student_of(teacher: SentimentClassifier, layers: list[int]) -> SentimentClassifier:
    """A copy of the teacher keeping only `layers` (indices into its layers; negative from the end)."""
    depth = teacher.encoder.config.num_hidden_layers
    if any(not -depth <= i < depth for i in layers):
        raise UserError(f"invalid param distill.layers={layers!r}: the teacher has layers 0..{depth - 1}")
    kept = [i % depth for i in layers]
    if len(set(kept)) != len(kept) or kept != sorted(kept):
        raise UserError(f"invalid param distill.layers={layers!r}: give distinct layers in increasing order")
    student = copy.deepcopy(teacher)
    parent, attribute, stack = layer_stack(student.encoder)
    setattr(parent, attribute, nn.ModuleList([stack[i] for i in kept]))
    student.encoder.config.num_hidden_layers = len(kept)
    if getattr(student.encoder.config, "layer_types", None):  # families that name each layer's attention kind
        student.encoder.config.layer_types = [student.encoder.config.layer_types[i] for i in kept]
    return student


class DistillTrainer(Trainer):
    """The Trainer with a distillation loss: soft_weight * T^2 * KL(teacher_T || student_T) + (1 - soft_weight) *
    cross-entropy with the labels, on rows that carry the teacher's logits (train); plain cross-entropy elsewhere
    (dev), so the early stopping and the kept epoch follow the same dev figures as fine-tuning."""

    def __init__(self, *args: Any, temperature: float, soft_weight: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.temperature, self.soft_weight = temperature, soft_weight

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        teacher = inputs.pop("teacher_logits", None)
        inputs.pop("length", None)  # kept in the rows for length-grouped batches; not a model input
        outputs = model(**inputs)
        loss = outputs.loss
        if teacher is not None:
            t = self.temperature
            student = nn.functional.log_softmax(outputs.logits.float() / t, dim=-1)
            target = nn.functional.log_softmax(teacher.float() / t, dim=-1)
            soft = nn.functional.kl_div(student, target, log_target=True, reduction="batchmean") * t * t
            loss = self.soft_weight * soft + (1 - self.soft_weight) * loss
        return (loss, outputs) if return_outputs else loss


def distill(
    key: str,
    names: list[str],
    cfg: DistillConfig,
    train_cfg: TrainConfig,
    seed: int,
    reading: Reading,
    train_rows: pd.DataFrame,
    teacher_dir: Path,
    out_dir: Path | None,
    checkpoint_dir: Path,
    *,
    resume: bool = False,
    live_dir: Path | None = None,
) -> dict[str, Any] | None:
    """Distil the teacher at `teacher_dir` into a student on `train_rows` under `train_cfg`'s recipe (its epochs,
    learning rate and batch size `cfg`'s), keep its best dev epoch, write the model under out_dir with dev/test
    predictions read as `reading` says; return its figures and predictions (None on ranks other than 0)."""
    student_budget = {"epochs": cfg.epochs, "learning_rate": cfg.learning_rate, "batch_size": cfg.batch_size}
    train_cfg = train_cfg.model_copy(update=student_budget)
    bf16 = precision_flags(train_cfg.precision)["bf16"]
    teacher, tokenizer, meta = load_classifier(teacher_dir)
    student = student_of(teacher, cfg.layers).train()
    frames = {split: read_clean(key, split) for split in HELD_OUT}
    frames["train"] = train_rows
    max_length = int(meta["max_length"])
    start = time.perf_counter()
    # the teacher's soft labels read as training reads (truncated), under training's precision: training input
    truncated = Reading(long_text="truncate", window_overlap=0.0)
    texts = frames["train"]["text"].tolist()
    soft = score_logits(torch_backend(teacher, bf16), tokenizer, texts, max_length, train_cfg.eval_batch_size, truncated)
    print(f"[distill:{key}] the teacher labelled {len(soft)} training texts in {time.perf_counter() - start:.1f}s")
    teacher_layers = teacher.encoder.config.num_hidden_layers
    del teacher
    data = {split: tokenize(frame, tokenizer, max_length) for split, frame in frames.items()}
    data["train"] = data["train"].add_column("teacher_logits", soft.astype("float32").tolist())
    data["dev"] = data["dev"].sort("length")

    set_seed(seed)
    trainer, seconds = train(
        student,
        train_cfg,
        seed,
        data,
        tokenizer,
        checkpoint_dir,
        resume=resume,
        live_dir=live_dir,
        name=f"distill:{key}",
        trainer_class=DistillTrainer,
        remove_unused_columns=False,  # the teacher's logits reach compute_loss
        temperature=cfg.temperature,
        soft_weight=cfg.soft_weight,
    )
    print(f"[distill:{key}] {len(cfg.layers)}-layer student trained on {len(data['train'])} examples in {seconds:.0f}s")
    if not trainer.is_world_process_zero():
        return None
    trained: SentimentClassifier = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    figures: dict[str, Any] = {
        "layers": cfg.layers,
        "teacher_layers": teacher_layers,
        "parameters": sum(p.numel() for p in trained.parameters()),
        "best_epoch": best_epoch(trainer),
        "epochs_run": trainer.state.epoch,
        "train_rows": len(frames["train"]),
        "trained_with": trained_with(trainer.args),
    }
    scored_as = train_cfg.model_copy(update={"max_length": max_length})
    predictions = reference_predictions(trained, tokenizer, frames, names, scored_as, reading)
    for split, frame in predictions.items():
        figures[split] = accuracy_and_f1(frame["label"], frame["pred"], len(names))
    head = {"labels": names, "max_length": max_length, "base_model": meta.get("base_model"), "distilled_layers": cfg.layers}
    save_classifier(trained, tokenizer, out_dir / "model", {**head, **served_facts("distill", key, predictions, names)})
    figures["curves"] = training_curves(trainer.state.log_history)
    figures["predictions"] = predictions
    return figures
