"""Fine-tuning with the Hugging Face Trainer: dynamic padding, length-grouped batches, bf16 where
the hardware has it, best epoch by a dev metric, early stopping, resumable checkpoints.

Runs unchanged under `torchrun` / `accelerate launch` (DDP): every rank trains its share of each
batch; only rank 0 predicts and writes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from datasets import Dataset
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
    set_seed,
)
from transformers.utils import is_torch_bf16_gpu_available

from sentiment.config import UserError
from sentiment.data.datasets import logit_columns, predictions_frame, read_clean, training_rows
from sentiment.io import atomic_dir, write_csv
from sentiment.machine import cpu_flags, cpu_supports_bf16
from sentiment.metrics import accuracy_and_f1, fit_temperature, scale
from sentiment.models.classifier import SentimentClassifier, build_model, load_tokenizer, model_max_length, save_classifier
from sentiment.models.config import ModelConfig, Recipe, TrainConfig
from sentiment.models.engine import Reading, score_logits, torch_backend
from sentiment.paths import HELD_OUT


def is_main_process() -> bool:
    """Rank 0 under torchrun / `accelerate launch` (both set RANK); a plain run is its own rank 0."""
    return int(os.environ.get("RANK", "0")) == 0


def precision_flags(choice: str) -> dict[str, bool]:
    """TrainingArguments bf16/fp16/use_cpu for `train.precision` (auto: bf16 where the hardware has it).

    use_cpu is set wherever training runs on the CPU anyway: with it, several processes on a
    CPU-only machine (torchrun) train one model together (DDP over gloo) instead of each training
    its own, and bf16 autocast may run on the CPU.
    """
    gpu = torch.cuda.is_available()
    if choice == "auto":
        if gpu:
            choice = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            choice = "bf16" if cpu_supports_bf16() else "fp32"
    if choice == "bf16" and gpu and not torch.cuda.is_bf16_supported():
        raise UserError("invalid param train.precision=bf16: this GPU has no bf16 (use fp16 or auto)")
    bf16 = choice == "bf16"
    # TrainingArguments refuses bf16 without a bf16 accelerator unless told to train on the CPU,
    # which is where bf16 autocast runs on AMX/AVX512-BF16 machines
    use_cpu = not torch.accelerator.is_available() or (bf16 and not is_torch_bf16_gpu_available())
    return {"bf16": bf16, "fp16": choice == "fp16", "use_cpu": use_cpu}


def tokenize(frame: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, max_length: int) -> Dataset:
    """Unpadded token ids (padding happens per batch) plus a `length` column for bucketing."""
    data = Dataset.from_dict({"text": frame["text"].tolist(), "labels": frame["label"].tolist()})
    encoded = data.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length),
        batched=True,
        remove_columns=["text"],
    )
    return encoded.map(lambda batch: {"length": [len(ids) for ids in batch["input_ids"]]}, batched=True)


def compute_metrics(prediction) -> dict[str, float]:
    return accuracy_and_f1(prediction.label_ids, prediction.predictions.argmax(axis=-1), prediction.predictions.shape[-1])


def validated(model_cfg: ModelConfig, train_cfg: TrainConfig) -> PreTrainedTokenizerBase:
    """The tokenizer, loaded once max_length and precision are checked against the encoder and machine, before
    any training starts."""
    tokenizer = load_tokenizer(model_cfg)
    limit = model_max_length(model_cfg, tokenizer)
    if train_cfg.max_length > limit:
        raise UserError(f"invalid param train.max_length={train_cfg.max_length!r}: {model_cfg.name} accepts 2..{limit}")
    precision_flags(train_cfg.precision)
    return tokenizer


def build_trainable(
    model_cfg: ModelConfig, train_cfg: TrainConfig, tokenizer: PreTrainedTokenizerBase, num_labels: int
) -> SentimentClassifier:
    """A fresh classifier with `train.freeze_embeddings` applied."""
    model = build_model(model_cfg, tokenizer, num_labels, train_cfg.max_length)
    if train_cfg.freeze_embeddings:
        # the word-embedding matrix is half of MiniLM's weights: frozen, each step skips its dense
        # gradient and its AdamW update (~15% faster steps here)
        model.encoder.get_input_embeddings().weight.requires_grad_(False)
    return model


def training_arguments(cfg: TrainConfig, seed: int, output_dir: Path, *, evaluate: bool = True) -> TrainingArguments:
    """The Trainer's arguments; `evaluate=False` trains for the set epochs with no dev split and no checkpoints."""
    return TrainingArguments(
        output_dir=str(output_dir),
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio of total steps
        max_grad_norm=cfg.max_grad_norm,
        label_smoothing_factor=cfg.label_smoothing,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        lr_scheduler_type="linear",
        train_sampling_strategy="group_by_length",
        eval_strategy="epoch" if evaluate else "no",
        save_strategy="epoch" if evaluate else "no",
        save_total_limit=2,
        load_best_model_at_end=evaluate,
        metric_for_best_model=cfg.best_metric,
        greater_is_better=cfg.best_metric != "loss",
        logging_strategy="steps",
        logging_steps=cfg.logging_steps,
        torch_compile=cfg.torch_compile,
        seed=seed,
        data_seed=seed,
        report_to="none",
        **precision_flags(cfg.precision),
    )


def training_curves(log_history: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-logging-step train loss, per-epoch dev loss/accuracy/F1-macro) from the Trainer's log."""
    steps = [
        {"step": r["step"], "epoch": r["epoch"], "train_loss": r["loss"], "learning_rate": r["learning_rate"]}
        for r in log_history
        if "loss" in r and "eval_loss" not in r
    ]
    epochs = [
        {"epoch": r["epoch"], "dev_loss": r["eval_loss"], "dev_accuracy": r["eval_accuracy"], "dev_f1_macro": r["eval_f1_macro"]}
        for r in log_history
        if "eval_loss" in r
    ]
    return pd.DataFrame(steps, columns=["step", "epoch", "train_loss", "learning_rate"]), pd.DataFrame(
        epochs, columns=["epoch", "dev_loss", "dev_accuracy", "dev_f1_macro"]
    )


def trained_with(args: TrainingArguments) -> dict[str, Any]:
    """What produced the figures: the precision the Trainer used, the device, library versions."""
    import transformers

    device = args.device.type
    if device == "cuda":
        device = f"cuda ({torch.cuda.get_device_name(args.device)})"
    return {
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        "device": device,
        "cpu_flags": cpu_flags(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def live_logger(live_dir: Path | None) -> list[Any]:
    """transformers' own dvclive callback, writing to `live_dir` without touching dvc.yaml, on rank 0 only."""
    if live_dir is None or not is_main_process():
        return []
    from dvclive import Live
    from transformers.integrations import DVCLiveCallback

    return [DVCLiveCallback(live=Live(str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None))]


def check_checkpoint(checkpoint_dir: Path, model: SentimentClassifier) -> None:
    """Refuse to resume from a checkpoint whose tensors do not fit the configured model."""
    from safetensors import safe_open

    last = max(checkpoint_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    with safe_open(str(last / "model.safetensors"), "pt") as f:
        for name in f.keys():
            shape = tuple(f.get_slice(name).get_shape())
            if expected.get(name) != shape:
                raise UserError(
                    f"checkpoint {last} does not match the configured model: {name} has shape "
                    f"{shape}, expected {expected.get(name)} (num_labels or model.* changed?)"
                )


def train(
    model: SentimentClassifier,
    cfg: TrainConfig,
    seed: int,
    data: dict[str, Dataset],
    tokenizer: PreTrainedTokenizerBase,
    checkpoint_dir: Path,
    *,
    resume: bool,
    live_dir: Path | None,
    name: str,
    trainer_class: type[Trainer] = Trainer,
    remove_unused_columns: bool = True,
    **trainer_kwargs: Any,
) -> tuple[Trainer, float]:
    """(the Trainer, seconds trained) of every training path (fine-tuning, distillation): `model` trained on
    data["train"], evaluated on data["dev"] each epoch, the best epoch kept, early stopping, live logs in
    `live_dir`; resumed from the last checkpoint in `checkpoint_dir` with `resume` (when there is one), else
    that directory is cleared first. `name` prefixes the messages; `trainer_kwargs` go to `trainer_class`."""
    if resume and not any(checkpoint_dir.glob("checkpoint-*")):
        print(f"[{name}] nothing to resume in {checkpoint_dir}; starting fresh")
        resume = False
    if resume:
        check_checkpoint(checkpoint_dir, model)
    if not resume and checkpoint_dir.exists() and is_main_process():
        shutil.rmtree(checkpoint_dir)
    args = training_arguments(cfg, seed, checkpoint_dir)
    if not remove_unused_columns:  # columns the model does not take reach compute_loss
        args.remove_unused_columns = False
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=data["train"],
        eval_dataset=data["dev"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience), *live_logger(live_dir)],
        **trainer_kwargs,
    )
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=True if resume else None)
    return trainer, time.perf_counter() - start


def best_epoch(trainer: Trainer) -> float | None:
    """The epoch whose dev evaluation picked the model kept (None when none did)."""
    state = trainer.state
    return next((r["epoch"] for r in state.log_history if "eval_loss" in r and state.best_global_step == r["step"]), None)


# --- what the training stages (finetune, distill) share ------------------------------------------------


def resume_argument(parser: argparse.ArgumentParser) -> None:
    """A training stage's `--resume` (run_stage's `arguments`)."""
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")


def resume_requested(args: argparse.Namespace) -> bool:
    """`--resume`, or FINETUNE_RESUME set to anything but 0 (`FINETUNE_RESUME=1 dvc repro`)."""
    return args.resume or os.environ.get("FINETUNE_RESUME", "") not in ("", "0")


def rank_zero_dir(path: Path) -> AbstractContextManager[Path | None]:
    """A training stage's out dir: rank 0 writes a temporary sibling swapped in on success; the other ranks get None.
    One writer: were every rank to swap in its own temporary directory, the last to finish would replace rank 0's."""
    return atomic_dir(path) if is_main_process() else nullcontext(None)


def write_curves(curves: tuple[pd.DataFrame, pd.DataFrame], plots: Path) -> None:
    """training_curves' (per-step train loss, per-epoch dev figures) as plots/<key>/<stage>/ CSVs."""
    steps, epochs = curves
    write_csv(steps, plots / "train_loss.csv")
    write_csv(epochs, plots / "dev_curve.csv")


def reference_predictions(
    model: SentimentClassifier,
    tokenizer: PreTrainedTokenizerBase,
    frames: dict[str, pd.DataFrame],
    names: list[str],
    cfg: TrainConfig,
    reading: Reading,
) -> dict[str, pd.DataFrame]:
    """Dev and test predictions of the reference form (torch fp32, whatever precision training used), through the
    scoring engine with `predict`'s long-text reading: the figures `sentiment predict --form torch` would give."""
    run = torch_backend(model.eval())
    predictions = {}
    for split in HELD_OUT:
        frame = frames[split]
        logits = score_logits(run, tokenizer, frame["text"].tolist(), cfg.max_length, cfg.eval_batch_size, reading)
        predictions[split] = predictions_frame(frame["id"], frame["label"], scale(logits, 1.0), names, logits)
    return predictions


def served_facts(model: str, key: str, predictions: dict[str, pd.DataFrame], names: list[str]) -> dict[str, Any]:
    """What serving reads from a model folder beside the weights: which model, the temperature fitted on dev
    logits (sentiment.metrics.fit_temperature) and its test accuracy and F1-macro."""
    dev, test = predictions["dev"], predictions["test"]
    logits = dev[logit_columns(names)].to_numpy()
    return {
        "model": model,
        "dataset": key,
        "temperature": fit_temperature(logits, dev["label"].to_numpy()),
        "test": accuracy_and_f1(test["label"], test["pred"], len(names)),
    }


def finetune(
    key: str,
    names: list[str],
    recipe: Recipe,
    out_dir: Path | None,
    checkpoint_dir: Path,
    *,
    resume: bool = False,
    train_fraction: float = 1.0,
    live_dir: Path | None = None,
) -> dict[str, Any] | None:
    """Train, keep the best epoch, write model + predictions under out_dir; return the metrics.

    With `live_dir`, dvclive logs training loss, learning rate and dev figures there as they happen
    (readable by `dvc exp show` / `dvc plots show` during the run). Under several processes only rank 0
    logs, predicts, writes and returns metrics (out_dir is None on the others).
    """
    model_cfg, train_cfg, seed = recipe.model, recipe.train, recipe.seed
    tokenizer = validated(model_cfg, train_cfg)
    frames = {split: read_clean(key, split) for split in HELD_OUT}
    frames["train"] = training_rows(key, recipe.drop_label_issues)
    if train_fraction < 1:
        frames["train"] = frames["train"].groupby("label", group_keys=False).sample(frac=train_fraction, random_state=seed)
    data = {split: tokenize(frame, tokenizer, train_cfg.max_length) for split, frame in frames.items()}
    # dev metrics do not depend on row order; length-sorted rows make the per-epoch evaluation's
    # batches nearly pad-free (the Trainer's eval sampler is sequential)
    data["dev"] = data["dev"].sort("length")  # Arrow sorts stably

    set_seed(seed)
    model = build_trainable(model_cfg, train_cfg, tokenizer, len(names))
    trainer, seconds = train(
        model, train_cfg, seed, data, tokenizer, checkpoint_dir, resume=resume, live_dir=live_dir, name=f"finetune:{key}"
    )
    print(
        f"[finetune:{key}] trained on {len(data['train'])} examples in {seconds:.0f}s "
        f"({trainer.state.num_train_epochs} epochs max, {len(data['train']) * trainer.state.epoch / seconds:.1f} ex/s)"
    )

    if not trainer.is_world_process_zero():
        return None
    metrics: dict[str, Any] = {
        "best_epoch": best_epoch(trainer),
        "epochs_run": trainer.state.epoch,
        "train_rows": len(frames["train"]),  # fewer than clean's when clean.drop_label_issues drops the audit's flags
        "trained_with": trained_with(trainer.args),
    }
    unwrapped: SentimentClassifier = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    predictions = reference_predictions(unwrapped, tokenizer, frames, names, train_cfg, recipe.reading)
    for split, frame in predictions.items():
        metrics[split] = accuracy_and_f1(frame["label"], frame["pred"], len(names))
        write_csv(frame, out_dir / f"finetune_{split}.csv")
    save_classifier(
        unwrapped,
        tokenizer,
        out_dir / "model",
        {
            "labels": names,
            "max_length": train_cfg.max_length,
            "base_model": model_cfg.name,
            **served_facts("finetune", key, predictions, names),
        },
    )
    metrics["curves"] = training_curves(trainer.state.log_history)
    return metrics
