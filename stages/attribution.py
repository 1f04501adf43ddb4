"""Token attributions for the classifier: raw attention, attention rollout, integrated gradients,
and the ERASER faithfulness scores (comprehensiveness, sufficiency) that compare them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from stages.models import SentimentClassifier, length_sorted_batches

Scorer = Callable[[SentimentClassifier, torch.Tensor, torch.Tensor, int], np.ndarray]


@torch.no_grad()
def attentions(model: SentimentClassifier, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(layers, heads, seq, seq) attention probabilities for one example (batch of one, no padding)."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, output_attentions=True)
    if not out.attentions or out.attentions[0] is None:
        raise RuntimeError("the encoder returned no attentions: load it with attn_implementation='eager'")
    return torch.stack([a[0] for a in out.attentions]).float()


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


def attention_scores(model: SentimentClassifier, input_ids: torch.Tensor, mask: torch.Tensor, target: int) -> np.ndarray:
    """Last layer's attention, heads averaged, as seen from the pooled vector."""
    return pooled_row(attentions(model, input_ids, mask)[-1].mean(dim=0), model.pooling)


def rollout_scores(model: SentimentClassifier, input_ids: torch.Tensor, mask: torch.Tensor, target: int) -> np.ndarray:
    return pooled_row(rollout(attentions(model, input_ids, mask)), model.pooling)


def integrated_gradients(
    model: SentimentClassifier, input_ids: torch.Tensor, mask: torch.Tensor, target: int, pad_id: int, steps: int = 16
) -> tuple[np.ndarray, float]:
    """Captum LayerIntegratedGradients on the word-embedding layer against a padding baseline
    (special tokens kept). Returns per-token attributions (summed over the embedding) and the
    convergence delta (how far the attributions' sum is from f(x) - f(baseline))."""
    from captum.attr import LayerIntegratedGradients

    def forward(ids: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model(input_ids=ids, attention_mask=attn).logits, dim=-1)

    baseline = input_ids.clone()
    baseline[:, 1:-1] = pad_id
    lig = LayerIntegratedGradients(forward, model.encoder.embeddings.word_embeddings)
    attributions, delta = lig.attribute(
        input_ids,
        baselines=baseline,
        additional_forward_args=(mask,),
        target=target,
        n_steps=steps,
        internal_batch_size=steps,
        return_convergence_delta=True,
    )
    return attributions.sum(dim=-1)[0].detach().numpy(), float(delta.abs().item())


@torch.no_grad()
def class_probability(model: SentimentClassifier, sequences: list[list[int]], target: list[int], pad_id: int) -> np.ndarray:
    """p(target | sequence) for a batch of token-id lists of different lengths."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    probs = torch.softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
    return probs[torch.arange(len(sequences)), torch.tensor(target)].numpy()


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
    model: SentimentClassifier, sequences: list[list[int]], targets: list[int], pad_id: int, batch_size: int
) -> np.ndarray:
    """class_probability over batches of similar length (little padding), in the input order."""
    result = np.zeros(len(sequences))
    for rows in length_sorted_batches(sequences, batch_size):
        result[rows] = class_probability(model, [sequences[i] for i in rows], [targets[i] for i in rows], pad_id)
    return result


def faithfulness(
    model: SentimentClassifier,
    examples: list[list[int]],
    scores: list[np.ndarray],
    targets: list[int],
    fractions: list[float],
    pad_id: int,
    batch_size: int = 64,
) -> dict[str, float]:
    """ERASER comprehensiveness (drop in p(target) when the top-k% tokens are removed; higher is
    more faithful) and sufficiency (drop when only they are kept; lower is better), averaged
    over the fractions and examples (DeYoung et al. 2020)."""
    full = batched_probability(model, examples, targets, pad_id, batch_size)
    comp, suff = [], []
    for fraction in fractions:
        variants = [erasure_variants(ids, s, fraction) for ids, s in zip(examples, scores, strict=True)]
        p_without = batched_probability(model, [v[0] for v in variants], targets, pad_id, batch_size)
        p_only = batched_probability(model, [v[1] for v in variants], targets, pad_id, batch_size)
        comp.append(np.mean(full - p_without))
        suff.append(np.mean(full - p_only))
    return {"comprehensiveness": float(np.mean(comp)), "sufficiency": float(np.mean(suff))}
