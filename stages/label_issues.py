"""label_issues: audit of the training labels by confident learning (cleanlab) on out-of-fold
probabilities: likely label errors ranked, the estimated joint of given and true labels and the natural
error rate it implies, and how well the audit finds noise planted on purpose (uniform flips and
class-conditional noise shaped like the joint), scored on the rows the planting could choose: ranking
figures, and precision and recall at a flag budget of as many rows as were planted.

Reads clean's train split; the training stages drop the flagged rows when `clean.drop_label_issues` is true.

python -m stages.label_issues <dataset key>
"""

import time

import numpy as np

from sentiment.data.datasets import read_clean
from sentiment.evaluation.label_audit import NOISE_KINDS, LabelIssuesConfig, audit, audited_rows, joint_table, ranked_issues
from sentiment.io import atomic_dir, pyplot, save_figure, write_csv, write_results
from sentiment.models.baselines import TfidfModel
from sentiment.models.out_of_fold import fold_model
from sentiment.paths import data_dir, plots_dir
from sentiment.stage import Run, run_stage


def noise_matrix_figure(joint: dict[str, dict[str, float]], names: list[str], title: str):
    plt = pyplot()
    grid = np.array([[joint[g][t] for t in names] for g in names])
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(names), 1.2 + 1.0 * len(names)))
    ax.imshow(grid, cmap="Blues")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(
                j, i, f"{grid[i, j]:.3f}", ha="center", va="center", color="white" if grid[i, j] > grid.max() / 2 else "black"
            )
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="true label (estimated)", ylabel="given label", title=title)
    return fig


def main(run: Run) -> None:
    cfg, key, names, seed = run.section(LabelIssuesConfig, "label_issues"), run.key, run.labels, run.seed
    enc = cfg.encoder
    out_of_fold = fold_model(
        cfg.model,
        seed,
        len(names),
        baseline=run.section(TfidfModel, "baseline"),  # read whatever the model, so a bad value fails before any work
        tfidf_C=cfg.tfidf_C,
        embeddings=cfg.embeddings,
        encoder=enc.model,
        encoder_train=enc.model_dump(exclude={"model"}),
    )
    rows = audited_rows(read_clean(key, "train"), cfg, seed)
    start = time.perf_counter()
    report, flagged, quality, probs = audit(rows, names, cfg, out_of_fold, seed)
    natural = report["natural_error_rate"]
    seconds = time.perf_counter() - start

    table = ranked_issues(rows, flagged, quality, probs, names)
    with atomic_dir(data_dir(key, "label_issues")) as out:
        write_csv(table, out / "issues.csv")
    with atomic_dir(plots_dir(key, "label_issues")) as out:
        write_csv(table.head(cfg.shown), out / "top_issues.csv")
        write_csv(joint_table(report["joint_given_true"]), out / "joint.csv")
        title = f"{key}: estimated P(given, true) on train ({cfg.model} out-of-fold)"
        save_figure(noise_matrix_figure(report["joint_given_true"], names, title), out / "noise_matrix.png")
    headline = {"flagged": report["flagged"]}
    if "planted" in report:  # both kinds' ranking and the class-conditional budget precision, on plantable rows
        uniform, class_conditional = report["planted"]["uniform"], report["planted"]["class_conditional"]
        headline |= {
            "auroc": class_conditional["auroc"],
            "auroc_uniform": uniform["auroc"],
            "precision_at_budget": class_conditional["precision_at_budget"],
        }
    write_results(key, "label_issues", report, headline)
    print(
        f"[label_issues:{key}] {cfg.model} out-of-fold on {len(rows)} rows "
        f"({'grouped' if report['grouped_folds'] else 'ungrouped'} folds) in {seconds:.0f}s: flagged {report['flagged']} "
        f"({report['flagged_rate']:.2%}), natural noise {natural:.2%}"
        + "".join(
            f"; {kind} planted: AUROC {p['auroc']:.3f} on {p['plantable_rows']} plantable rows ({p['all_rows']['auroc']:.3f} "
            f"on all), precision at a budget of {p['budget']} {p['precision_at_budget']:.3f}"
            for kind, p in report.get("planted", {}).items()
            if kind in NOISE_KINDS
        )
    )


if __name__ == "__main__":
    run_stage(main, __doc__)
