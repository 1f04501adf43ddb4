"""slices: accuracy and F1 on edge-case slices of test (word lists, length buckets), with intervals,
for the fine-tuned model and the best baseline (chosen on dev by evaluate).

    python -m stages.slices <dataset key>
"""

import pandas as pd

from sentiment.data.datasets import load_predictions, predictions_file, read_clean
from sentiment.data.text import WordLists
from sentiment.evaluation.evaluate import EvaluatedModels
from sentiment.evaluation.slicing import SlicesConfig, slice_masks, slice_table, top_errors, write_chart
from sentiment.io import atomic_dir, read_results, write_csv, write_results
from sentiment.paths import plots_dir
from sentiment.stage import Run, run_stage


def main(run: Run) -> None:
    cfg, key, names = run.section(SlicesConfig, "slices"), run.key, run.labels
    stages = run.section(EvaluatedModels, "evaluate").models
    best = read_results(key, "evaluate").get("best_baseline")
    models = {"finetune": "finetune", **({best: stages[best]} if best else {})}
    test = read_clean(key, "test")
    masks = slice_masks(test["text"], run.section(WordLists, "words").sets(), cfg.length_bounds)
    report, rows, errors = {}, [], []
    for model, stage in models.items():
        frame = load_predictions(predictions_file(key, stage, model, "test"), test, names)
        table = slice_table(frame, masks, len(names), cfg.bootstrap_resamples, run.seed)
        report[model] = {r["slice"]: {k: v for k, v in r.items() if k != "slice"} for r in table}
        rows += [{"model": model, "slice": r["slice"], "n": r["n"], "accuracy": r["accuracy"]} for r in table]
        errors.append(top_errors(frame, test, masks, names, cfg.top_errors).assign(model=model))
    scored = [r["accuracy"] for r in report["finetune"].values() if r["accuracy"] is not None]
    write_results(key, "slices", report, {"min_accuracy": min(scored, default=None)})
    table = pd.DataFrame(rows)
    with atomic_dir(plots_dir(key, "slices")) as out:
        write_csv(table, out / "slices.csv")
        write_csv(table[table["model"] == "finetune"], out / "finetune.csv")
        write_csv(pd.concat(errors, ignore_index=True), out / "errors.csv")
        write_chart(out / "slices.png", table, key)
    for model in models:
        parts = [f"{s} n={r['n']} acc={r['accuracy']:.4f}" for s, r in report[model].items() if r["accuracy"] is not None]
        print(f"[slices:{key}] {model}: " + "; ".join(parts))


if __name__ == "__main__":
    run_stage(main, __doc__)
