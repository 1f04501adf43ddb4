"""Out-of-fold class probabilities: each row scored by a model fitted on the other folds only (the folds
come from the caller, e.g. grouped so that no text and a text containing it sit on both sides), from the
TF-IDF pipeline, from logistic regression on a frozen sentence encoder's embeddings, or from an encoder
trained with the Trainer (no dev split, no checkpoints)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field, PositiveInt
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict

from sentiment.config import Section, UserError
from sentiment.metrics import scale
from sentiment.models.baselines import TfidfModel, build_pipeline, one_vs_rest
from sentiment.models.config import ModelConfig, TrainConfig
from sentiment.models.engine import Reading, score_logits, torch_backend

Folds = list[tuple[np.ndarray, np.ndarray]]


class EmbeddingModel(Section):
    """params.yaml `label_issues.embeddings`: the frozen sentence encoder (mean-pooled, as sentence-transformers
    pools all-MiniLM-L6-v2) and the logistic regression fitted on its embeddings."""

    name: str  # a Hub id (or local path) of an encoder
    max_length: int = Field(ge=2)
    batch_size: PositiveInt
    C: float = Field(gt=0)


def sentence_embeddings(texts: list[str], cfg: EmbeddingModel) -> np.ndarray:
    """Mean-pooled last hidden states of the frozen `cfg.name` encoder, L2-normalised, in the texts' order.
    The encoder never sees a label, so embedding every row once leaks nothing between folds.
    Not sentence-transformers' `encode`: it is not a dependency, and these few lines are the same mean pooling
    and normalisation through the pipeline's own hub mirror, device choice and length-sorted batcher."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from sentiment.data.hub import load_pretrained
    from sentiment.models.classifier import device, mean_pool

    tokenizer = load_pretrained(AutoTokenizer, cfg.name)
    on = device()
    encoder = load_pretrained(AutoModel, cfg.name).eval().to(on)

    @torch.inference_mode()
    def embed(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        ids, mask = torch.from_numpy(input_ids).to(on), torch.from_numpy(attention_mask).to(on)
        pooled = mean_pool(encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask)
        return torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy()

    truncated = Reading(long_text="truncate", window_overlap=0.0)
    return score_logits(embed, tokenizer, list(texts), cfg.max_length, cfg.batch_size, truncated).astype(np.float32)


def embedding_probs(embeddings: np.ndarray, labels: np.ndarray, C: float, folds: Folds, seed: int) -> np.ndarray:
    """Probabilities from logistic regression (at `C`) on sentence embeddings, fitted on the other folds."""
    classifier = LogisticRegression(C=C, max_iter=2000, random_state=seed)
    return cross_val_predict(classifier, embeddings, labels, cv=folds, method="predict_proba")


def tfidf_probs(
    texts: pd.Series, labels: np.ndarray, cfg: TfidfModel, C: float, folds: Folds, seed: int, n_classes: int
) -> np.ndarray:
    """Probabilities from the TF-IDF pipeline (logistic regression at `C`) fitted on the other folds."""
    pipeline = build_pipeline(cfg, seed, n_classes)
    pipeline.set_params(**{"clf__estimator__C" if one_vs_rest(cfg, n_classes) else "clf__C": C})
    return cross_val_predict(pipeline, texts, labels, cv=folds, method="predict_proba", n_jobs=cfg.n_jobs)


def encoder_probs(
    texts: pd.Series, labels: np.ndarray, model_cfg: ModelConfig, train_cfg, folds: Folds, seed: int, n_classes: int
) -> np.ndarray:
    """Probabilities from a fresh `model_cfg` encoder trained for `train_cfg.epochs` (a
    `sentiment.models.config.TrainConfig`) on the other folds."""
    from transformers import DataCollatorWithPadding, Trainer, set_seed  # torch loads only for this model

    from sentiment.models.classifier import load_tokenizer, model_max_length
    from sentiment.models.training import build_trainable, tokenize, training_arguments

    tokenizer = load_tokenizer(model_cfg)
    if train_cfg.max_length > (limit := model_max_length(model_cfg, tokenizer)):
        where = f"label_issues.encoder.max_length={train_cfg.max_length!r}"
        raise UserError(f"invalid param {where}: {model_cfg.name} accepts 2..{limit}")
    probs = np.zeros((len(labels), n_classes))
    frame = pd.DataFrame({"text": np.asarray(texts), "label": labels})
    for fold, (fit_rows, held_rows) in enumerate(folds):
        set_seed(seed + fold)
        model = build_trainable(model_cfg, train_cfg, tokenizer, n_classes)
        with tempfile.TemporaryDirectory(prefix="out-of-fold-") as scratch:
            args = training_arguments(train_cfg, seed + fold, Path(scratch), evaluate=False)
            trainer = Trainer(
                model=model,
                args=args,
                train_dataset=tokenize(frame.iloc[fit_rows], tokenizer, train_cfg.max_length),
                processing_class=tokenizer,
                data_collator=DataCollatorWithPadding(tokenizer),
            )
            trainer.train()
        held = frame["text"].iloc[held_rows].tolist()
        batch = train_cfg.eval_batch_size
        truncated = Reading(long_text="truncate", window_overlap=0.0)
        logits = score_logits(torch_backend(model.eval(), args.bf16), tokenizer, held, train_cfg.max_length, batch, truncated)
        probs[held_rows] = scale(logits, 1.0)
        print(f"out-of-fold {fold + 1}/{len(folds)}: trained on {len(fit_rows)} rows, scored {len(held_rows)}")
    return probs


def fold_model(
    kind: str,
    seed: int,
    n_classes: int,
    *,
    baseline: TfidfModel | None = None,
    tfidf_C: float = 1.0,
    embeddings: EmbeddingModel | None = None,
    encoder: ModelConfig | None = None,
    encoder_train: dict | None = None,
):
    """f(rows, labels, folds) -> out-of-fold probabilities: `tfidf` on rows' `text_norm` (baseline's features,
    logistic regression at `tfidf_C`); `embeddings`: logistic regression on the frozen encoder's embeddings of
    rows' `text` (computed once per rows frame, whatever the labels); or `encoder` on rows' `text`, trained with
    `encoder_train` (epochs, learning_rate, batch_size, max_length, weight_decay, warmup_ratio)."""
    if kind == "tfidf":
        return lambda rows, labels, folds: tfidf_probs(rows["text_norm"], labels, baseline, tfidf_C, folds, seed, n_classes)
    if kind == "embeddings":
        cached: list = [None, None]  # (rows frame, its embeddings): the audit refits on planted labels, same rows

        def from_embeddings(rows: pd.DataFrame, labels: np.ndarray, folds: Folds) -> np.ndarray:
            if cached[0] is not rows:
                cached[:] = [rows, sentence_embeddings(rows["text"].tolist(), embeddings)]
            return embedding_probs(cached[1], labels, embeddings.C, folds, seed)

        return from_embeddings

    settings = dict(encoder_train or {})
    # the rest of the recipe is fixed: no dev split, checkpoints or early stopping (evaluate=False), no tricks
    train_cfg = TrainConfig(
        eval_batch_size=2 * settings["batch_size"],
        grad_accum=1,
        max_grad_norm=1.0,
        label_smoothing=0.0,
        freeze_embeddings=False,
        precision="auto",
        torch_compile=False,
        best_metric="loss",
        early_stopping_patience=0,
        logging_steps=50,
        **settings,
    )
    return lambda rows, labels, folds: encoder_probs(rows["text"], labels, encoder, train_cfg, folds, seed, n_classes)
