"""Explaining the classifier: raw attention, attention rollout, integrated gradients (IG), shown per
word, and the ERASER faithfulness scores (comprehensiveness, sufficiency) that compare them.

IG holds for every encoder family because it is computed on the input embeddings (the model's own
`get_input_embeddings()`), with the position ids and token types the model uses for the input passed
explicitly to every forward, so the baseline is evaluated at the same positions as the input (RoBERTa-
style models otherwise derive positions from padding). The step count doubles until the completeness
gap |sum(attributions) - (f(x) - f(baseline))| is within `ig_tolerance` of |f(x) - f(baseline)|.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, PositiveInt
from torch import nn

from sentiment.config import Section
from sentiment.data.datasets import prob_columns
from sentiment.data.text import has_any
from sentiment.io import pyplot, save_figure
from sentiment.metrics import scale
from sentiment.models.classifier import SentimentClassifier
from sentiment.models.engine import padded_batches, run_batches, torch_backend

Baseline = Literal["auto", "pad", "mask", "zero"]


class AttentionConfig(Section):
    """params.yaml `attention`."""

    examples_per_category: int = Field(ge=0)  # negation, contrast and failure examples from test
    max_words: PositiveInt
    layers: list[int]  # attention heatmaps for these layers (heads averaged)
    ig_baseline: Baseline
    ig_steps: int = Field(ge=2, le=4096)  # first try; doubled until converged
    ig_max_steps: int = Field(ge=2, le=4096)
    ig_tolerance: float = Field(gt=0)  # allowed |completeness gap| / |f(x) - f(baseline)|
    faithfulness_examples: PositiveInt
    fractions: list[float]


# --- attention and rollout -----------------------------------------------------------------------


@torch.no_grad()
def attentions(model: SentimentClassifier, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(layers, heads, seq, seq) attention probabilities for one example (batch of one, no padding)."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, output_attentions=True)
    if not out.attentions or out.attentions[0] is None:
        raise RuntimeError("the encoder returned no attentions: load it with need_attention_weights=True")
    return torch.stack([a[0] for a in out.attentions]).float().cpu()


def rollout(attention: torch.Tensor) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): heads averaged, residual added as 0.5·A + 0.5·I,
    rows renormalised, then the layers multiplied from the first up. (layers, heads, s, s) -> (s, s)."""
    seq = attention.shape[-1]
    result = torch.eye(seq)
    for layer in attention:
        mixed = 0.5 * layer.mean(dim=0) + 0.5 * torch.eye(seq)
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        result = mixed @ result
    return result


def pooled_row(matrix: torch.Tensor, pooling: str) -> np.ndarray:
    """Token scores seen from the sentence vector: the CLS row, or the mean of all rows for mean pooling."""
    row = matrix[0] if pooling == "cls" else matrix.mean(dim=0)
    return row.numpy()


def attention_scores(model: SentimentClassifier, input_ids: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Last layer's attention, heads averaged, as seen from the pooled vector."""
    return pooled_row(attentions(model, input_ids, mask)[-1].mean(dim=0), model.pooling)


def rollout_scores(model: SentimentClassifier, input_ids: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    return pooled_row(rollout(attentions(model, input_ids, mask)), model.pooling)


# --- integrated gradients ---------------------------------------------------------------------------


def absolute_positions(model: SentimentClassifier) -> nn.Embedding | None:
    """The encoder's absolute position-embedding table, when it has one added before its LayerNorm."""
    table = getattr(getattr(model.encoder, "embeddings", None), "position_embeddings", None)
    return table if isinstance(table, nn.Embedding) else None


def resolve_baseline(tokenizer, choice: Baseline) -> str:
    """`auto`: [MASK] wherever the tokenizer has a mask token, else padding. Measured on every tested
    family (bench/ig_baselines.py, docs/experiments.md), a [MASK] baseline left a smaller completeness gap
    at a fixed step count than padding in most families (the README's table counts them), and a far smaller
    one for DeBERTa-v3 and BERT,
    whose all-padding input (relative positions; a zero padding row) is nearly one point repeated."""
    if choice != "auto":
        return choice
    return "mask" if tokenizer.mask_token_id is not None else "pad"


def model_positions(model: SentimentClassifier, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
    """The position ids the model itself uses for `input_ids` (read off its position table), or None."""
    table = absolute_positions(model)
    if table is None or "position_ids" not in model.encoder_inputs:
        return None
    seen: list[torch.Tensor] = []
    handle = table.register_forward_pre_hook(lambda _module, args: seen.append(args[0].detach().clone()))
    try:
        with torch.no_grad():
            model(input_ids=input_ids, attention_mask=mask)
    finally:
        handle.remove()
    return seen[0].expand_as(input_ids) if seen else None


def integrated_gradients(
    model: SentimentClassifier,
    tokenizer,
    input_ids: torch.Tensor,
    mask: torch.Tensor,
    target: int,
    cfg: AttentionConfig,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Per-token IG attributions (summed over the embedding; special tokens kept as in the input) and
    {baseline, steps, delta (absolute), relative_delta, converged}."""
    from captum.attr import IntegratedGradients

    positions = model_positions(model, input_ids, mask)
    token_types = torch.zeros_like(input_ids) if "token_type_ids" in model.encoder_inputs else None

    def forward(embeds: torch.Tensor) -> torch.Tensor:
        n = embeds.shape[0]
        extra = {k: v.expand(n, -1) for k, v in (("position_ids", positions), ("token_type_ids", token_types)) if v is not None}
        logits = model(inputs_embeds=embeds, attention_mask=mask.expand(n, -1), **extra).logits
        return torch.softmax(logits.float(), dim=-1)

    kind = resolve_baseline(tokenizer, cfg.ig_baseline)
    embedding = model.encoder.get_input_embeddings()
    special = tokenizer.get_special_tokens_mask(input_ids[0].tolist(), already_has_special_tokens=True)
    content = ~torch.tensor(special, dtype=torch.bool, device=input_ids.device)  # the baseline keeps special tokens
    with torch.no_grad():
        embeds = embedding(input_ids)
        if kind == "zero":
            base = embeds.clone()
            base[:, content] = 0.0
        else:
            ids = input_ids.clone()
            ids[:, content] = tokenizer.pad_token_id if kind == "pad" else tokenizer.mask_token_id
            base = embedding(ids)
        gap = float(forward(embeds)[0, target] - forward(base)[0, target])
    steps = cfg.ig_steps
    ig = IntegratedGradients(forward)
    while True:
        attributions, delta = ig.attribute(
            embeds, baselines=base, target=target, n_steps=steps, internal_batch_size=steps, return_convergence_delta=True
        )
        delta = abs(float(delta.item()))
        converged = delta <= cfg.ig_tolerance * abs(gap) or delta < 1e-6  # below 1e-6 is float32 noise
        if converged or steps * 2 > cfg.ig_max_steps:
            break
        steps *= 2
    info = {
        "baseline": kind,
        "steps": steps,
        "output_change": abs(gap),
        "delta": delta,
        "relative_delta": delta / max(abs(gap), 1e-12),
        "converged": converged,
    }
    return attributions.sum(dim=-1)[0].detach().float().cpu().numpy(), info


# --- words, not pieces ----------------------------------------------------------------------------


def word_groups(encoding, text: str) -> list[tuple[str, list[int]]]:
    """(word as written in `text`, its token positions) for every word, special tokens left out.

    Uses the fast tokenizer's own word ids and character offsets, so `##ing`, `Ġplot` and `▁wit`
    come back as the words they are part of, spelled as in the text.
    """
    ids = encoding.word_ids(0)
    offsets = encoding["offset_mapping"][0].tolist()
    groups: dict[int, list[int]] = {}
    for position, word in enumerate(ids):
        if word is not None:
            groups.setdefault(word, []).append(position)
    words = []
    for positions in groups.values():
        start, end = offsets[positions[0]][0], offsets[positions[-1]][1]
        words.append((text[start:end].strip() or text[start:end], positions))
    return words


def per_word(scores: np.ndarray, groups: list[tuple[str, list[int]]], how: str) -> np.ndarray:
    """Token scores -> word scores: `sum` for attributions (they add up to the output change), `mean` for attention."""
    reduce = np.sum if how == "sum" else np.mean
    return np.array([reduce(scores[positions]) for _, positions in groups])


def per_word_matrix(matrix: np.ndarray, groups: list[tuple[str, list[int]]]) -> np.ndarray:
    """A token x token attention map averaged over each word's pieces, on both axes."""
    rows = np.stack([matrix[positions].mean(axis=0) for _, positions in groups])
    return np.stack([rows[:, positions].mean(axis=1) for _, positions in groups], axis=1)


# --- the methods ---------------------------------------------------------------------------------------

Scorer = Callable[[SentimentClassifier, Any, torch.Tensor, torch.Tensor, int, "AttentionConfig"], tuple[np.ndarray, dict | None]]


@dataclass(frozen=True)
class Method:
    """One attribution method: its per-token scorer (with its run's diagnostics, or None), how a word's pieces
    combine (`sum` for attributions, which add up to the output change; `mean` for attention weights), its
    label in figure titles, and whether its figure is a word strip (raw attention's is a heatmap per layer)."""

    score: Scorer
    per_word: Literal["sum", "mean"]
    label: str
    strip_figure: bool = True


def _attention_run(model: SentimentClassifier, _tokenizer, ids: torch.Tensor, mask: torch.Tensor, _target: int, _cfg):
    return attention_scores(model, ids, mask), None


def _rollout_run(model: SentimentClassifier, _tokenizer, ids: torch.Tensor, mask: torch.Tensor, _target: int, _cfg):
    return rollout_scores(model, ids, mask), None


# The one list of methods: the attention stage, its figures (dvc.yaml's plots), the faithfulness report and
# `sentiment explain` all iterate it. Adding a method is one scorer and one entry here.
METHODS: dict[str, Method] = {
    "attention": Method(_attention_run, "mean", "attention", strip_figure=False),
    "rollout": Method(_rollout_run, "mean", "rollout"),
    "integrated_gradients": Method(integrated_gradients, "sum", "integrated gradients"),
}
CONTROL = "random"  # the faithfulness report's random-scores control, beside the METHODS


def explain_example(model: SentimentClassifier, tokenizer, text: str, max_length: int, cfg: AttentionConfig) -> dict[str, Any]:
    """Prediction, and per-word scores of each method for one text (IG summed, attention averaged per word)."""
    enc = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt", return_offsets_mapping=True)
    on = next(model.parameters()).device
    ids, mask = enc["input_ids"].to(on), enc["attention_mask"].to(on)
    probs = scale(torch_backend(model)(enc["input_ids"].numpy(), enc["attention_mask"].numpy()), 1.0)[0]
    target = int(probs.argmax())
    att = attentions(model, ids, mask)
    groups = word_groups(enc, text)
    runs = {name: method.score(model, tokenizer, ids, mask, target, cfg) for name, method in METHODS.items()}
    return {
        "words": [w for w, _ in groups],
        "probs": probs,
        "target": target,
        "layers": {f"layer {i % len(att)}": per_word_matrix(att[i].mean(dim=0).numpy(), groups) for i in cfg.layers},
        "scores": {name: per_word(runs[name][0], groups, METHODS[name].per_word) for name in METHODS},
        "ig": runs["integrated_gradients"][1],
    }


# --- which test rows to show ------------------------------------------------------------------------


def select_examples(
    test: pd.DataFrame, preds: pd.DataFrame, names: list[str], word_lists: dict[str, set[str]], k: int, max_words: int
) -> pd.DataFrame:
    """k test rows per category (each word list, then failures), deterministic: word-list rows are the
    first k by id among rows of 6..max_words words; failures are the highest-confidence errors."""
    frame = test.merge(preds[["id", "pred", *prob_columns(names)]], on="id")
    frame["confidence"] = frame[prob_columns(names)].max(axis=1)
    n_words = frame["text"].str.split().str.len()
    readable = frame[(n_words >= 6) & (n_words <= max_words)].sort_values("id")
    chosen = []
    for category, vocab in word_lists.items():
        rows = readable[readable["text"].map(lambda t, v=vocab: has_any(t, v))].head(k)
        chosen.append(rows.assign(category=category))
    errors = frame[(frame["label"] != frame["pred"]) & (n_words <= max_words)]
    chosen.append(errors.sort_values(["confidence", "id"], ascending=[False, True]).head(k).assign(category="failure"))
    selected = pd.concat(chosen, ignore_index=True)
    selected["name"] = selected["category"] + selected.groupby("category").cumcount().astype(str)
    return selected


# --- figures ------------------------------------------------------------------------------------------


def word_strip(path: Path, words: list[str], scores: np.ndarray, title: str) -> None:
    """One row of words coloured by score (diverging when scores have both signs)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4, 0.45 * len(words)), 1.8))
    limit = float(np.abs(scores).max()) or 1.0
    signed = bool((scores < 0).any())
    ax.imshow(scores[None, :], cmap="RdBu_r" if signed else "Reds", vmin=-limit if signed else 0, vmax=limit, aspect="auto")
    ax.set_xticks(range(len(words)), words, rotation=60, ha="right", fontsize=8)
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def attention_heatmap(path: Path, words: list[str], maps: dict[str, np.ndarray], title: str) -> None:
    """Word x word attention maps side by side (one per layer)."""
    plt = pyplot()
    size = max(3.0, 0.32 * len(words))
    fig, axes = plt.subplots(1, len(maps), figsize=(size * len(maps) + 1, size + 1), squeeze=False)
    for ax, (label, matrix) in zip(axes[0], maps.items(), strict=True):
        ax.imshow(matrix, cmap="viridis")
        ax.set_xticks(range(len(words)), words, rotation=90, fontsize=7)
        ax.set_yticks(range(len(words)), words, fontsize=7)
        ax.set_title(label, fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


# --- faithfulness ---------------------------------------------------------------------------------------


def erasure_variants(ids: list[int], scores: np.ndarray, fraction: float) -> tuple[list[int], list[int]]:
    """(ids without the top-scored tokens, ids with only them), special tokens [first, last] kept.

    At least one content token is ranked top; ties are broken by position.
    """
    content = np.arange(1, len(ids) - 1)
    k = max(1, int(round(fraction * len(content))))
    order = content[np.lexsort((content, -scores[content]))]
    top = set(order[:k].tolist())
    without = [t for i, t in enumerate(ids) if i not in top]
    only = [t for i, t in enumerate(ids) if i in top or i in (0, len(ids) - 1)]
    return without, only


def batched_probability(
    model: SentimentClassifier, tokenizer, sequences: list[list[int]], targets: list[int], batch_size: int
) -> np.ndarray:
    """p(target | sequence) for token-id lists of different lengths, in the input order, scored through the
    scoring engine's batcher (length-sorted padded batches, little padding) and its softmax."""
    if not sequences:
        return np.zeros(0)
    probs = scale(run_batches(torch_backend(model), padded_batches(tokenizer, sequences, batch_size), len(sequences)), 1.0)
    return probs[np.arange(len(sequences)), np.asarray(targets)]


def faithfulness(
    model: SentimentClassifier,
    examples: list[list[int]],
    scores: list[np.ndarray],
    targets: list[int],
    fractions: list[float],
    tokenizer,
    batch_size: int = 64,
) -> dict[str, float]:
    """ERASER comprehensiveness (drop in p(target) when the top-k% tokens are removed; higher is
    more faithful) and sufficiency (drop when only they are kept; lower is better), averaged
    over the fractions and examples (DeYoung et al. 2020)."""
    full = batched_probability(model, tokenizer, examples, targets, batch_size)
    comp, suff = [], []
    for fraction in fractions:
        variants = [erasure_variants(ids, s, fraction) for ids, s in zip(examples, scores, strict=True)]
        p_without = batched_probability(model, tokenizer, [v[0] for v in variants], targets, batch_size)
        p_only = batched_probability(model, tokenizer, [v[1] for v in variants], targets, batch_size)
        comp.append(np.mean(full - p_without))
        suff.append(np.mean(full - p_only))
    return {"comprehensiveness": float(np.mean(comp)), "sufficiency": float(np.mean(suff))}


def faithfulness_report(
    model: SentimentClassifier, tokenizer, texts: list[str], preds: list[int], max_length: int, cfg: AttentionConfig, seed: int
) -> dict[str, Any]:
    """Each method (and a random control) scored by ERASER on the first `faithfulness_examples` texts of >= 5 tokens."""
    on = next(model.parameters()).device
    encoded = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    keep = [i for i, ids in enumerate(encoded) if len(ids) >= 5][: cfg.faithfulness_examples]
    examples, targets = [encoded[i] for i in keep], [preds[i] for i in keep]
    rng = np.random.default_rng(seed)
    scores: dict[str, list[np.ndarray]] = {m: [] for m in (*METHODS, CONTROL)}
    ig_runs = []
    for ids, target in zip(examples, targets, strict=True):
        t = torch.tensor([ids], device=on)
        m = torch.ones_like(t)
        for name, method in METHODS.items():
            token_scores, info = method.score(model, tokenizer, t, m, target, cfg)
            scores[name].append(token_scores)
            if name == "integrated_gradients":
                ig_runs.append(info)
        scores[CONTROL].append(rng.random(len(ids)))
    results = {name: faithfulness(model, examples, s, targets, cfg.fractions, tokenizer) for name, s in scores.items()}
    control = results[CONTROL]
    for name in METHODS:
        results[name]["beats_random_comprehensiveness"] = results[name]["comprehensiveness"] > control["comprehensiveness"]
        results[name]["beats_random_sufficiency"] = results[name]["sufficiency"] < control["sufficiency"]
    unconverged = sum(not r["converged"] for r in ig_runs)
    if unconverged:
        print(
            f"warning: integrated gradients did not reach attention.ig_tolerance on {unconverged} of {len(ig_runs)} examples "
            f"within attention.ig_max_steps={cfg.ig_max_steps}",
            file=sys.stderr,
        )
    return {
        "methods": results,
        "n_examples": len(examples),
        "fractions": cfg.fractions,
        "integrated_gradients": {
            "baseline": ig_runs[0]["baseline"] if ig_runs else None,
            "relative_delta_mean": float(np.mean([r["relative_delta"] for r in ig_runs])) if ig_runs else None,
            "relative_delta_max": float(np.max([r["relative_delta"] for r in ig_runs])) if ig_runs else None,
            "steps_mean": float(np.mean([r["steps"] for r in ig_runs])) if ig_runs else None,
            "unconverged": unconverged,
        },
    }
