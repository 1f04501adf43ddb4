"""ablation_summary: mean ± std over seeds per configuration, deltas vs the final config, best on dev.

python -m stages.ablation_summary <dataset key>
"""

from sentiment.io import atomic_dir, write_csv, write_results
from sentiment.models.ablation import AblationConfig, chart, read_cells, summarise, summary_columns
from sentiment.models.config import HeadChoice, LightBudget
from sentiment.paths import data_dir, plots_dir
from sentiment.stage import Run, run_stage


def main(run: Run) -> None:
    grid, model = run.section(AblationConfig, "ablations"), run.section(HeadChoice, "model")
    cells = read_cells(data_dir(run.key, "ablations"), grid, model)
    summary, report = summarise(cells, run.section(LightBudget, "light"), model)
    best = report["configs"][report["best_on_dev"]]  # its test figures: the cell picked on dev
    write_results(run.key, "ablations", report, {"accuracy": best["test_accuracy"], "f1_macro": best["test_f1_macro"]})
    with atomic_dir(plots_dir(run.key, "ablations")) as out:
        write_csv(summary[summary_columns()], out / "summary.csv")
        write_csv(cells.sort_values(["encoder", "pooling", "dropout", "seed"]), out / "cells.csv")
        chart(out / "ablations.png", summary, run.key)
    for row in summary.itertuples():
        print(
            f"[ablations:{run.key}] {row.config}: test acc {row.test_accuracy:.4f} ± {row.test_accuracy_std:.4f} "
            f"(delta vs final {row.test_accuracy_delta_vs_final:+.4f}), dev acc {row.dev_accuracy:.4f}"
        )


if __name__ == "__main__":
    run_stage(main, __doc__)
