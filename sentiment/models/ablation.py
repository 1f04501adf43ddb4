"""The ablation grid: one cell is the fine-tune with pooling, dropout, seed and encoder (`pretrained`
= model.name, or `scratch`) overridden, on the light budget; the summary reports mean ± std over
seeds per configuration and the difference from the cell with the final config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from sentiment.config import Section, UserError, validated
from sentiment.io import pyplot, save_figure
from sentiment.models.config import SCRATCH, EncoderChoice, HeadChoice, LightBudget, ModelConfig, Pooling
from sentiment.paths import HELD_OUT

Encoder = Literal["pretrained", "scratch"]


class AblationConfig(Section):
    """params.yaml `ablations`."""

    datasets: list[str]
    pooling: list[Pooling]
    dropout: list[int | float]  # an int stays one: cell names spell the values as dvc.yaml interpolates them
    seeds: list[int]


def cell_name(encoder: str, pooling: str, dropout: Any, seed: Any) -> str:
    """A cell's directory name, spelled as dvc.yaml interpolates the params values (`0.1`, `3`)."""
    return f"{encoder}-{pooling}-{dropout}-{seed}"


def cell_model(configured: EncoderChoice, encoder: Encoder, pooling: str, dropout: float) -> ModelConfig:
    """One cell's model: the configured encoder (`pretrained`) or a from-scratch one over its tokenizer, with the
    cell's pooling and dropout."""
    model: dict[str, Any] = {**configured.model_dump(), "pooling": pooling, "dropout": dropout}
    if encoder == SCRATCH:
        # a from-scratch encoder over the configured model's tokenizer (or model.tokenizer's)
        model.update(name=SCRATCH, tokenizer=configured.tokenizer or configured.name)
    return validated(ModelConfig, model, "model")


def grid_cells(grid: AblationConfig, model: HeadChoice) -> list[tuple[str, str, Any, Any]]:
    """The cells dvc.yaml's ablation matrices declare: the pretrained grid and the scratch row (the configured
    pooling and dropout)."""
    cells = [("pretrained", p, d, s) for p in grid.pooling for d in grid.dropout for s in grid.seeds]
    cells += [(SCRATCH, model.pooling, model.dropout, s) for s in grid.seeds]
    return cells


def read_cells(root: Path, grid: AblationConfig, model: HeadChoice) -> pd.DataFrame:
    """One row per cell: its settings and dev/test accuracy and F1-macro."""
    rows = []
    for encoder, pooling, dropout, seed in grid_cells(grid, model):
        path = root / cell_name(encoder, pooling, dropout, seed) / "metrics.json"
        if not path.exists():
            raise UserError(f"ablation cell missing: {path} (run `dvc repro ablation_cell ablation_scratch`)")
        m = json.loads(path.read_text())
        figures = {f"{split}_{metric}": m[split][metric] for split in HELD_OUT for metric in ("accuracy", "f1_macro")}
        rows.append({"encoder": encoder, "pooling": pooling, "dropout": float(dropout), "seed": int(seed), **figures})
    return pd.DataFrame(rows)


FIGURES = ["dev_accuracy", "dev_f1_macro", "test_accuracy", "test_f1_macro"]


def summarise(cells: pd.DataFrame, budget: LightBudget, model: HeadChoice) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(per-configuration table, metrics report): mean ± std over seeds, deltas vs the final config."""
    grouped = cells.groupby(["encoder", "pooling", "dropout"], sort=True)[FIGURES]
    summary = grouped.mean().join(grouped.std(ddof=1).fillna(0.0).add_suffix("_std")).join(grouped.size().rename("seeds"))
    final = ("pretrained", model.pooling, float(model.dropout))
    for figure in FIGURES:  # NaN (null in the JSON) when an experiment's final config is outside the grid
        reference = summary.loc[final, figure] if final in summary.index else float("nan")
        summary[f"{figure}_delta_vs_final"] = summary[figure] - reference
    summary = summary.reset_index()
    summary["config"] = summary["encoder"] + " " + summary["pooling"] + " dropout " + summary["dropout"].astype(str)
    epochs = int(budget.epochs) if float(budget.epochs).is_integer() else budget.epochs
    report = {
        "note": (
            f"cells train {epochs} epoch(s) on {budget.train_fraction:.0%} of train at max_length "
            f"{budget.max_length}, lighter than the final run; deltas are against the cell with the final config "
            f"{final}; selection uses dev only, test is reported"
        ),
        "final_config": {"encoder": final[0], "pooling": final[1], "dropout": final[2]},
        "best_on_dev": summary.sort_values(["dev_f1_macro", "config"], ascending=[False, True])["config"].iloc[0],
        "configs": {
            row["config"]: {k: v for k, v in row.items() if k not in ("config", "encoder", "pooling", "dropout")}
            for row in summary.to_dict("records")
        },
    }
    return summary, report


def summary_columns() -> list[str]:
    return ["config", "seeds", *FIGURES, *(f"{f}_std" for f in FIGURES), *(f"{f}_delta_vs_final" for f in FIGURES)]


def chart(path: Path, summary: pd.DataFrame, key: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(summary) + 1.5))
    y = range(len(summary))
    # F1-macro: the figure the best cell is picked by (on dev)
    ax.errorbar(summary["dev_f1_macro"], [i - 0.12 for i in y], xerr=summary["dev_f1_macro_std"], fmt="o", label="dev")
    ax.errorbar(summary["test_f1_macro"], [i + 0.12 for i in y], xerr=summary["test_f1_macro_std"], fmt="s", label="test")
    ax.set_yticks(list(y), summary["config"])
    ax.invert_yaxis()
    ax.set(title=f"{key}: ablations, F1-macro mean ± std over seeds", xlabel="F1-macro")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
