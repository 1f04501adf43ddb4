"""attention: attention heatmaps, rollout and integrated-gradients maps (per word) for chosen test
examples, and ERASER faithfulness of each method against a random control.

    python -m stages.attention <dataset key>
"""

import pandas as pd
import torch

from sentiment.config import UserError
from sentiment.data.datasets import read_clean
from sentiment.data.text import WordLists
from sentiment.evaluation.attribution import (
    METHODS,
    AttentionConfig,
    attention_heatmap,
    explain_example,
    faithfulness_report,
    select_examples,
    word_strip,
)
from sentiment.io import atomic_dir, write_csv, write_results
from sentiment.models.classifier import load_classifier
from sentiment.paths import data_dir, model_dir, plots_dir
from sentiment.stage import Run, run_stage


def main(run: Run) -> None:
    cfg, key, names = run.section(AttentionConfig, "attention"), run.key, run.labels
    torch.manual_seed(run.seed)
    model, tokenizer, meta = load_classifier(model_dir(key), need_attention_weights=True)
    n_layers = model.encoder.config.num_hidden_layers
    if any(not -n_layers <= i < n_layers for i in cfg.layers):
        raise UserError(f"invalid param attention.layers={cfg.layers!r}: the encoder has {n_layers} layers")
    test = read_clean(key, "test")
    preds = pd.read_csv(data_dir(key, "finetune") / "finetune_test.csv", dtype={"id": str})
    words = run.section(WordLists, "words").sets()
    examples = select_examples(test, preds, names, words, cfg.examples_per_category, cfg.max_words)
    rows, runs = [], {}
    with atomic_dir(plots_dir(key, "attention")) as out:
        for ex in examples.itertuples():
            result = explain_example(model, tokenizer, ex.text, meta["max_length"], cfg)
            title = f"{ex.name}: true {names[ex.label]}, predicted {names[result['target']]} ({result['probs'].max():.2f})"
            attention_heatmap(out / f"{ex.name}_attention.png", result["words"], result["layers"], title)
            for name, method in METHODS.items():
                if method.strip_figure:
                    scores = result["scores"][name]
                    word_strip(out / f"{ex.name}_{name}.png", result["words"], scores, f"{method.label} · {title}")
            runs[ex.name] = result["ig"]
            for pos, word in enumerate(result["words"]):
                rows.append(
                    {
                        "example": ex.name,
                        "id": ex.id,
                        "position": pos,
                        "word": word,
                        **{method: result["scores"][method][pos] for method in METHODS},
                    }
                )
        write_csv(pd.DataFrame(rows), out / "word_scores.csv")
        write_csv(examples[["name", "category", "id", "text", "label", "pred", "confidence"]], out / "examples.csv")
    frame = test.merge(preds[["id", "pred"]], on="id").sort_values("id")
    report = faithfulness_report(
        model, tokenizer, frame["text"].tolist(), frame["pred"].astype(int).tolist(), meta["max_length"], cfg, run.seed
    )
    report["integrated_gradients"]["examples"] = runs
    report["word_scores"] = "integrated gradients summed over a word's pieces; attention and rollout averaged"
    best = max(report["methods"][name]["comprehensiveness"] for name in METHODS)
    write_results(key, "attention", report, {"comprehensiveness": best})
    for name, r in report["methods"].items():
        print(f"[attention:{key}] {name}: comprehensiveness {r['comprehensiveness']:.4f} sufficiency {r['sufficiency']:.4f}")


if __name__ == "__main__":
    run_stage(main, __doc__)
