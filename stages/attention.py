"""attention stage: attention heatmaps, rollout and integrated-gradients maps for chosen test
examples, and faithfulness scores that compare the methods with a random control.

    python -m stages.attention <dataset key>
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from stages.attribution import (
    attention_scores,
    attentions,
    faithfulness,
    integrated_gradients,
    rollout,
    rollout_scores,
)
from stages.common import StageError, atomic_dir, dataset_params, load_params, require_range, run_main, write_json
from stages.data import label_names, prob_columns, read_clean
from stages.models import load_classifier
from stages.slices import has_any, word_list

METHODS = ("attention", "rollout", "integrated_gradients")


def select_examples(test: pd.DataFrame, preds: pd.DataFrame, names: list[str], params: dict[str, Any]) -> pd.DataFrame:
    """k test rows per category (negation, contrast, failure), deterministic: word slices take the
    first k by id among rows of 6..max_words words; failures are the highest-confidence errors."""
    cfg = params["attention"]
    k, max_words = cfg["examples_per_category"], cfg["max_words"]
    frame = test.merge(preds[["id", "pred", *prob_columns(names)]], on="id")
    frame["confidence"] = frame[prob_columns(names)].max(axis=1)
    n_words = frame["text"].str.split().str.len()
    readable = frame[(n_words >= 6) & (n_words <= max_words)].sort_values("id")
    chosen = []
    for category in ("negation", "contrast"):
        vocab = word_list(f"slices.word_slices.{category}", params["slices"]["word_slices"][category])
        rows = readable[readable["text"].map(lambda t, v=vocab: has_any(t, v))].head(k)
        chosen.append(rows.assign(category=category))
    errors = frame[(frame["label"] != frame["pred"]) & (n_words <= max_words)]
    chosen.append(errors.sort_values(["confidence", "id"], ascending=[False, True]).head(k).assign(category="failure"))
    selected = pd.concat(chosen, ignore_index=True)
    selected["name"] = selected["category"] + selected.groupby("category").cumcount().astype(str)
    return selected


def token_strip(path: Path, tokens: list[str], scores: np.ndarray, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4, 0.45 * len(tokens)), 1.8))
    limit = float(np.abs(scores).max()) or 1.0
    ax.imshow(
        scores[None, :],
        cmap="RdBu_r" if (scores < 0).any() else "Reds",
        vmin=-limit if (scores < 0).any() else 0,
        vmax=limit,
        aspect="auto",
    )
    ax.set_xticks(range(len(tokens)), tokens, rotation=60, ha="right", fontsize=8)
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def attention_heatmap(path: Path, tokens: list[str], maps: dict[str, np.ndarray], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(3.0, 0.32 * len(tokens))
    fig, axes = plt.subplots(1, len(maps), figsize=(size * len(maps) + 1, size + 1), squeeze=False)
    for ax, (label, matrix) in zip(axes[0], maps.items(), strict=True):
        ax.imshow(matrix, cmap="viridis")
        ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
        ax.set_yticks(range(len(tokens)), tokens, fontsize=7)
        ax.set_title(label, fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def explain_example(model, tokenizer, text: str, max_length: int, cfg: dict[str, Any]) -> dict[str, Any]:
    """Prediction and per-token scores of each method for one text (special tokens included)."""
    enc = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)[0].numpy()
    target = int(probs.argmax())
    att = attentions(model, ids, mask)
    ig, delta = integrated_gradients(model, ids, mask, target, tokenizer.pad_token_id, cfg["ig_steps"])
    return {
        "tokens": tokenizer.convert_ids_to_tokens(ids[0]),
        "probs": probs,
        "target": target,
        "layers": {f"layer {i % len(att)}": att[i].mean(dim=0).numpy() for i in cfg["layers"]},
        "scores": {
            "attention": attention_scores(model, ids, mask, target),
            "rollout": rollout_scores(model, ids, mask, target),
            "integrated_gradients": ig,
        },
        "rollout_matrix": rollout(att).numpy(),
        "ig_delta": delta,
    }


def visible(tokens: list[str], show_special: bool) -> slice:
    return slice(None) if show_special else slice(1, len(tokens) - 1)


def faithfulness_report(
    model, tokenizer, test: pd.DataFrame, preds: pd.DataFrame, max_length: int, cfg: dict[str, Any], seed: int
) -> dict[str, Any]:
    frame = test.merge(preds[["id", "pred"]], on="id").sort_values("id")
    encoded = tokenizer(frame["text"].tolist(), truncation=True, max_length=max_length)["input_ids"]
    keep = [i for i, ids in enumerate(encoded) if len(ids) >= 5][: cfg["faithfulness_examples"]]
    examples = [encoded[i] for i in keep]
    targets = [int(frame["pred"].iloc[i]) for i in keep]
    rng = np.random.default_rng(seed)
    scores: dict[str, list[np.ndarray]] = {m: [] for m in (*METHODS, "random")}
    deltas = []
    for ids, target in zip(examples, targets, strict=True):
        t, m = torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long)
        scores["attention"].append(attention_scores(model, t, m, target))
        scores["rollout"].append(rollout_scores(model, t, m, target))
        ig, delta = integrated_gradients(model, t, m, target, tokenizer.pad_token_id, cfg["ig_steps"])
        scores["integrated_gradients"].append(ig)
        deltas.append(delta)
        scores["random"].append(rng.random(len(ids)))
    results = {
        name: faithfulness(model, examples, s, targets, cfg["fractions"], tokenizer.pad_token_id) for name, s in scores.items()
    }
    control = results["random"]
    for name in METHODS:
        results[name]["beats_random_comprehensiveness"] = results[name]["comprehensiveness"] > control["comprehensiveness"]
        results[name]["beats_random_sufficiency"] = results[name]["sufficiency"] < control["sufficiency"]
    return {
        "methods": results,
        "n_examples": len(examples),
        "fractions": cfg["fractions"],
        "ig_convergence_delta_mean_abs": float(np.mean(deltas)),
    }


def main(argv: list[str]) -> None:
    key = argv[0]
    params = load_params()
    names = label_names(dataset_params(params, key))
    cfg = params["attention"]
    require_range("attention.ig_steps", cfg["ig_steps"], 2, 1000)
    require_range("attention.faithfulness_examples", cfg["faithfulness_examples"], 1, 10**6)
    if not cfg["fractions"] or any(not 0 < f <= 1 for f in cfg["fractions"]):
        raise StageError(f"invalid param attention.fractions={cfg['fractions']!r}: expected values in (0, 1]")
    torch.manual_seed(params["seed"])
    model, tokenizer, meta = load_classifier(Path("data") / key / "finetune" / "model", attn_implementation="eager")
    n_layers = model.encoder.config.num_hidden_layers
    bad = [i for i in cfg["layers"] if not -n_layers <= i < n_layers]
    if bad:
        raise StageError(f"invalid param attention.layers={cfg['layers']!r}: the encoder has {n_layers} layers")
    test = read_clean(key, "test")
    preds = pd.read_csv(Path("data") / key / "finetune" / "finetune_test.csv", dtype={"id": str})
    examples = select_examples(test, preds, names, params)
    rows = {m: [] for m in METHODS}
    deltas = {}
    with atomic_dir(Path("plots") / key / "attention") as out:
        for ex in examples.itertuples():
            result = explain_example(model, tokenizer, ex.text, meta["max_length"], cfg)
            view = visible(result["tokens"], cfg["show_special_tokens"])
            tokens = result["tokens"][view]
            title = f"{ex.name}: true {names[ex.label]}, predicted {names[result['target']]} ({result['probs'].max():.2f})"
            attention_heatmap(
                out / f"{ex.name}_attention.png", tokens, {k: v[view, view] for k, v in result["layers"].items()}, title
            )
            token_strip(out / f"{ex.name}_rollout.png", tokens, result["scores"]["rollout"][view], f"rollout · {title}")
            token_strip(
                out / f"{ex.name}_integrated_gradients.png",
                tokens,
                result["scores"]["integrated_gradients"][view],
                f"integrated gradients · {title}",
            )
            deltas[ex.name] = result["ig_delta"]
            for method in METHODS:
                for pos, (tok, score) in enumerate(zip(result["tokens"], result["scores"][method], strict=True)):
                    rows[method].append({"example": ex.name, "id": ex.id, "position": pos, "token": tok, "score": score})
        for method in METHODS:
            pd.DataFrame(rows[method]).to_csv(out / f"token_scores_{method}.csv", index=False, float_format="%.6g")
        examples[["name", "category", "id", "text", "label", "pred", "confidence"]].to_csv(
            out / "examples.csv", index=False, float_format="%.6g"
        )
    report = faithfulness_report(model, tokenizer, test, preds, meta["max_length"], cfg, params["seed"])
    report["ig_convergence_delta_examples"] = deltas
    write_json(Path("metrics") / key / "attribution.json", report)
    for name, r in report["methods"].items():
        print(f"[attention:{key}] {name}: comprehensiveness {r['comprehensiveness']:.4f} sufficiency {r['sufficiency']:.4f}")


if __name__ == "__main__":
    run_main(main)
