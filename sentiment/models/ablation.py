"""The ablation grid: one cell is the fine-tune with pooling, dropout, seed and encoder (`pretrained`
= model.name, or `scratch`) overridden, on the light budget; the summary reports mean ± std over
seeds per configuration and the difference from the cell with the final config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from sentiment.config import Section, UserError, section
from sentiment.data.datasets import HELD_OUT
from sentiment.io import pyplot, save_figure
from sentiment.models.config import SCRATCH, ModelConfig, Pooling
from sentiment.models.light import LightBudget, with_overrides

Encoder = Literal["pretrained", "scratch"]


class AblationConfig(Section):
    """params.yaml `ablations`."""

    datasets: list[str]
    pooling: list[Pooling]
    dropout: list[float]
    seeds: list[int]


def cell_name(encoder: str, pooling: str, dropout: Any, seed: Any) -> str:
    """A cell's directory name, spelled as dvc.yaml interpolates the params values (`0.1`, `3`)."""
    return f"{encoder}-{pooling}-{dropout}-{seed}"


def cell_params(params: dict[str, Any], encoder: Encoder, pooling: str, dropout: float, seed: int) -> dict[str, Any]:
    """params.yaml with one cell's overrides and the light budget applied."""
    budget = section(LightBudget, params, "light")
    model: dict[str, Any] = {"pooling": pooling, "dropout": float(dropout)}
    if encoder == SCRATCH:
        # a from-scratch encoder over the configured model's tokenizer (or model.tokenizer's)
        configured = section(ModelConfig, params, "model")
        model.update(name=SCRATCH, tokenizer=configured.tokenizer or configured.name)
    cell = with_overrides(params, budget, model=model)
    cell["seed"] = int(seed)
    return cell


def grid_cells(params: dict[str, Any]) -> list[tuple[str, str, Any, Any]]:
    """The cells dvc.yaml's ablation matrices declare: the pretrained grid and the scratch row."""
    grid = section(AblationConfig, params, "ablations")
    section(ModelConfig, params, "model")
    # both sections validated; their values are read as written, spelled as dvc.yaml interpolates them in directory names
    raw, model = params["ablations"], params["model"]
    cells = [("pretrained", p, d, s) for p in grid.pooling for d in raw["dropout"] for s in raw["seeds"]]
    cells += [(SCRATCH, model["pooling"], model["dropout"], s) for s in raw["seeds"]]
    return cells


def read_cells(root: Path, params: dict[str, Any]) -> pd.DataFrame:
    """One row per cell: its settings and dev/test accuracy and F1-macro."""
    rows = []
    for encoder, pooling, dropout, seed in grid_cells(params):
        path = root / cell_name(encoder, pooling, dropout, seed) / "metrics.json"
        if not path.exists():
            raise UserError(f"ablation cell missing: {path} (run `dvc repro ablation_cell ablation_scratch`)")
        m = json.loads(path.read_text())
        figures = {f"{split}_{metric}": m[split][metric] for split in HELD_OUT for metric in ("accuracy", "f1_macro")}
        rows.append({"encoder": encoder, "pooling": pooling, "dropout": float(dropout), "seed": int(seed), **figures})
    return pd.DataFrame(rows)


FIGURES = ["dev_accuracy", "dev_f1_macro", "test_accuracy", "test_f1_macro"]


def summarise(cells: pd.DataFrame, params: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(per-configuration table, metrics report): mean ± std over seeds, deltas vs the final config."""
    budget = section(LightBudget, params, "light")
    grouped = cells.groupby(["encoder", "pooling", "dropout"], sort=True)[FIGURES]
    summary = grouped.mean().join(grouped.std(ddof=1).fillna(0.0).add_suffix("_std")).join(grouped.size().rename("seeds"))
    final = ("pretrained", params["model"]["pooling"], float(params["model"]["dropout"]))
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
