"""slices stage: accuracy and F1 on edge-case slices of test (negation, contrast, length), with intervals.

python -m stages.slices <dataset key>
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages.common import StageError, atomic_dir, dataset_params, load_params, require_range, run_main, write_json
from stages.data import label_names, prob_columns, read_clean
from stages.evaluate import accuracy, load_predictions
from stages.metrics import bootstrap_interval, f1_macro

WORD_RE = re.compile(r"[\w']+|n't")


def words(text: str) -> list[str]:
    """Lowercase word tokens; SST-2's split clitics ("does n't") and tweets' ("doesn't") both match n't."""
    return WORD_RE.findall(text.lower())


def has_any(text: str, vocabulary: set[str]) -> bool:
    tokens = words(text)
    negation_suffix = "n't" in vocabulary
    return any(t in vocabulary or (negation_suffix and t.endswith("n't")) for t in tokens)


def length_bucket(n_tokens: int, bounds: list[int]) -> str:
    """'≤4', '5–8', …, '33+' for bounds [4, 8, 16, 32]."""
    low = 1
    for high in bounds:
        if n_tokens <= high:
            return f"<={high}" if low == 1 else f"{low}-{high}"
        low = high + 1
    return f"{low}+"


def word_list(name: str, values: list) -> set[str]:
    """A params word list as lowercase strings (params are read as YAML 1.2: `no` is a word)."""
    words = set()
    for value in values:
        if not isinstance(value, str):
            raise StageError(f"invalid param {name}: {value!r} is not a word")
        words.add(value.lower())
    return words


def slice_masks(texts: pd.Series, cfg: dict[str, Any]) -> dict[str, np.ndarray]:
    """Boolean row masks per slice name, from the word lists and length bounds in params."""
    masks = {"all": np.ones(len(texts), dtype=bool)}
    for name, vocabulary in cfg["word_slices"].items():
        vocab = word_list(f"slices.word_slices.{name}", vocabulary)
        masks[name] = texts.map(lambda t, v=vocab: has_any(t, v)).to_numpy()
    lengths = texts.map(lambda t: len(t.split()))
    buckets = lengths.map(lambda n: length_bucket(n, cfg["length_bounds"]))
    labels = [length_bucket(b, cfg["length_bounds"]) for b in [*cfg["length_bounds"], cfg["length_bounds"][-1] + 1]]
    for label in labels:
        masks[f"length {label}"] = (buckets == label).to_numpy()
    return masks


def slice_table(frame: pd.DataFrame, masks: dict[str, np.ndarray], cfg: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    labels, preds = frame["label"].to_numpy(), frame["pred"].to_numpy()
    overall = {"accuracy": accuracy(labels, preds), "f1_macro": f1_macro(labels, preds)}
    rows = []
    for name, mask in masks.items():
        n = int(mask.sum())
        row: dict[str, Any] = {"slice": name, "n": n}
        if n == 0:
            rows.append({**row, "accuracy": None, "f1_macro": None, "note": "empty slice"})
            continue
        y, p = labels[mask], preds[mask]
        for metric, fn in (("accuracy", accuracy), ("f1_macro", f1_macro)):
            row[metric] = fn(y, p)
            row[f"{metric}_delta"] = row[metric] - overall[metric]
            row[f"{metric}_ci95"] = bootstrap_interval(y, p, metric, cfg["bootstrap_resamples"], seed) if n >= 2 else [None, None]
        rows.append(row)
    return rows


def top_errors(frame: pd.DataFrame, test: pd.DataFrame, masks: dict[str, np.ndarray], names: list[str], k: int) -> pd.DataFrame:
    """The k highest-confidence errors of each slice."""
    confidence = frame[prob_columns(names)].to_numpy().max(axis=1)
    wrong = frame["label"].to_numpy() != frame["pred"].to_numpy()
    parts = []
    for name, mask in masks.items():
        rows = np.where(mask & wrong)[0]
        rows = rows[np.lexsort((test["id"].to_numpy()[rows], -confidence[rows]))][:k]
        parts.append(
            pd.DataFrame(
                {
                    "slice": name,
                    "id": test["id"].to_numpy()[rows],
                    "text": test["text"].to_numpy()[rows],
                    "label": [names[i] for i in frame["label"].to_numpy()[rows]],
                    "pred": [names[i] for i in frame["pred"].to_numpy()[rows]],
                    "confidence": confidence[rows],
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def write_chart(path: Path, table: pd.DataFrame, key: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = table.assign(accuracy=pd.to_numeric(table["accuracy"]))
    pivot = table.pivot(index="slice", columns="model", values="accuracy").reindex(table["slice"].unique())
    ax = pivot.plot.barh(figsize=(7, 0.45 * len(pivot) + 1.5), xlim=(0, 1))
    for container in ax.containers:
        ax.bar_label(container, fmt="%.3f", fontsize=7)
    ax.invert_yaxis()
    ax.set(title=f"{key}: test accuracy per slice", xlabel="accuracy", ylabel="")
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(ax.figure)


def main(argv: list[str]) -> None:
    key = argv[0]
    params = load_params()
    names = label_names(dataset_params(params, key))
    cfg = params["slices"]
    require_range("slices.bootstrap_resamples", cfg["bootstrap_resamples"], 1000, 10**6)
    bounds = cfg["length_bounds"]
    if not bounds or sorted(set(bounds)) != bounds or bounds[0] < 1:
        raise StageError(f"invalid param slices.length_bounds={bounds!r}: expected increasing positive integers")
    evaluation = Path("metrics") / key / "evaluate.json"
    if not evaluation.exists():
        raise StageError(f"missing {evaluation} (run `dvc repro evaluate@{key}`)")
    best = json.loads(evaluation.read_text()).get("best_baseline")
    models = {"finetune": "finetune", **({best: params["evaluate"]["models"][best]} if best else {})}
    test = read_clean(key, "test")
    masks = slice_masks(test["text"], cfg)
    report: dict[str, Any] = {}
    rows, errors = [], []
    for model, stage in models.items():
        frame = load_predictions(Path("data") / key / stage / f"{model}_test.csv", test, names)
        table = slice_table(frame, masks, cfg, params["seed"])
        report[model] = {r["slice"]: {k: v for k, v in r.items() if k != "slice"} for r in table}
        rows += [{"model": model, "slice": r["slice"], "n": r["n"], "accuracy": r["accuracy"]} for r in table]
        errors.append(top_errors(frame, test, masks, names, cfg["top_errors"]).assign(model=model))
    write_json(Path("metrics") / key / "slices.json", report)
    table = pd.DataFrame(rows)
    with atomic_dir(Path("plots") / key / "slices") as out:
        table.to_csv(out / "slices.csv", index=False, float_format="%.6g")
        table[table["model"] == "finetune"].to_csv(out / "finetune.csv", index=False, float_format="%.6g")
        pd.concat(errors, ignore_index=True).to_csv(out / "errors.csv", index=False, float_format="%.6g")
        write_chart(out / "slices.png", table, key)
    for model in models:
        parts = [f"{s} n={r['n']} acc={r['accuracy']:.4f}" for s, r in report[model].items() if r["accuracy"] is not None]
        print(f"[slices:{key}] {model}: " + "; ".join(parts))


if __name__ == "__main__":
    run_main(main)
