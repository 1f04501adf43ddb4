"""ablation stage: one cell of the ablation grid, and the summary over all cells.

    python -m stages.ablation cell <dataset> <encoder> <pooling> <dropout> <seed>
    python -m stages.ablation summary <dataset>

A cell is the finetune stage's training with pooling, dropout, seed and encoder
(`pretrained` = model.name, or `scratch`) overridden, on the lighter budget in
`ablations` (epochs, train fraction, max_length). The summary reports, per configuration,
mean ± std over seeds, and the difference from the cell that has the locked final config.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from stages.common import StageError, atomic_dir, load_params, require_choice, run_main, write_json
from stages.finetune import finetune
from stages.models import SCRATCH

ENCODERS = ("pretrained", SCRATCH)


def cell_name(encoder: str, pooling: str, dropout: Any, seed: Any) -> str:
    """A cell's directory name, spelled as dvc.yaml interpolates the params values (`0.1`, `3`)."""
    return f"{encoder}-{pooling}-{dropout}-{seed}"


def cell_params(params: dict[str, Any], encoder: str, pooling: str, dropout: float, seed: int) -> dict[str, Any]:
    """params.yaml with one cell's overrides applied."""
    cell = copy.deepcopy(params)
    light = params["ablations"]
    require_choice("ablation encoder", encoder, ENCODERS)
    if encoder == SCRATCH:
        cell["model"]["name"] = SCRATCH
    cell["model"].update(pooling=pooling, dropout=float(dropout))
    cell["train"].update(epochs=light["epochs"], max_length=light["max_length"])
    cell["seed"] = int(seed)
    return cell


def run_cell(key: str, encoder: str, pooling: str, dropout_text: str, seed_text: str) -> None:
    params = load_params()
    name = cell_name(encoder, pooling, dropout_text, seed_text)
    dropout, seed = float(dropout_text), int(seed_text)
    out_dir = Path("data") / key / "ablations" / name
    with atomic_dir(out_dir) as out:
        metrics = finetune(
            key,
            cell_params(params, encoder, pooling, dropout, seed),
            out,
            Path("checkpoints") / f"{key}-{name}",
            train_fraction=params["ablations"]["train_fraction"],
        )
        shutil.rmtree(out / "model")  # the summary needs figures, not 90 MB per cell
        metrics.pop("curves")
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(Path("checkpoints") / f"{key}-{name}", ignore_errors=True)
    print(f"[ablation:{key}] {name}: dev acc {metrics['dev']['accuracy']:.4f}, test acc {metrics['test']['accuracy']:.4f}")


def grid_cells(params: dict[str, Any]) -> list[tuple[str, str, Any, Any]]:
    """The cells dvc.yaml's ablation matrices declare: the pretrained grid and the scratch row."""
    light = params["ablations"]
    cells = [
        ("pretrained", pooling, dropout, seed)
        for pooling in light["pooling"]
        for dropout in light["dropout"]
        for seed in light["seeds"]
    ]
    cells += [(SCRATCH, params["model"]["pooling"], params["model"]["dropout"], seed) for seed in light["seeds"]]
    return cells


def summarise(key: str) -> None:
    params = load_params()
    light = params["ablations"]
    root = Path("data") / key / "ablations"
    rows = []
    for encoder, pooling, dropout, seed in grid_cells(params):
        path = root / cell_name(encoder, pooling, dropout, seed) / "metrics.json"
        if not path.exists():
            raise StageError(f"ablation cell missing: {path} (run `dvc repro ablation_cell ablation_scratch`)")
        m = json.loads(path.read_text())
        rows.append(
            {
                "encoder": encoder,
                "pooling": pooling,
                "dropout": float(dropout),
                "seed": int(seed),
                **{f"{split}_{metric}": m[split][metric] for split in ("dev", "test") for metric in ("accuracy", "f1_macro")},
            }
        )
    cells = pd.DataFrame(rows)
    figures = ["dev_accuracy", "dev_f1_macro", "test_accuracy", "test_f1_macro"]
    grouped = cells.groupby(["encoder", "pooling", "dropout"], sort=True)[figures]
    summary = grouped.mean().join(grouped.std(ddof=1).fillna(0.0).add_suffix("_std")).join(grouped.size().rename("seeds"))
    final = ("pretrained", params["model"]["pooling"], float(params["model"]["dropout"]))
    for figure in figures:  # NaN (null in the JSON) when an experiment's final config is outside the grid
        reference = summary.loc[final, figure] if final in summary.index else float("nan")
        summary[f"{figure}_delta_vs_final"] = summary[figure] - reference
    summary = summary.reset_index()
    summary["config"] = summary["encoder"] + " " + summary["pooling"] + " dropout " + summary["dropout"].astype(str)
    report = {
        "note": (
            f"cells train {light['epochs']} epoch(s) on {light['train_fraction']:.0%} of train at max_length "
            f"{light['max_length']}, lighter than the final run; deltas are against the cell with the final config "
            f"{final}; selection uses dev only, test is reported"
        ),
        "final_config": {"encoder": final[0], "pooling": final[1], "dropout": final[2]},
        "best_on_dev": summary.sort_values(["dev_f1_macro", "config"], ascending=[False, True])["config"].iloc[0],
        "configs": {
            row["config"]: {k: v for k, v in row.items() if k not in ("config", "encoder", "pooling", "dropout")}
            for row in summary.to_dict("records")
        },
    }
    write_json(Path("metrics") / key / "ablations.json", report)
    with atomic_dir(Path("plots") / key / "ablations") as out:
        cols = ["config", "seeds", *figures, *(f"{f}_std" for f in figures), *(f"{f}_delta_vs_final" for f in figures)]
        summary[cols].to_csv(out / "summary.csv", index=False, float_format="%.6g")
        cells.sort_values(["encoder", "pooling", "dropout", "seed"]).to_csv(out / "cells.csv", index=False, float_format="%.6g")
        chart(out / "ablations.png", summary, key)
    for row in summary.itertuples():
        print(
            f"[ablations:{key}] {row.config}: test acc {row.test_accuracy:.4f} ± {row.test_accuracy_std:.4f} "
            f"(delta vs final {row.test_accuracy_delta_vs_final:+.4f}), dev acc {row.dev_accuracy:.4f}"
        )


def chart(path: Path, summary: pd.DataFrame, key: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.5 * len(summary) + 1.5))
    y = range(len(summary))
    ax.errorbar(summary["dev_accuracy"], [i - 0.12 for i in y], xerr=summary["dev_accuracy_std"], fmt="o", label="dev")
    ax.errorbar(summary["test_accuracy"], [i + 0.12 for i in y], xerr=summary["test_accuracy_std"], fmt="s", label="test")
    ax.set_yticks(list(y), summary["config"])
    ax.invert_yaxis()
    ax.set(title=f"{key}: ablations, accuracy mean ± std over seeds", xlabel="accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str]) -> None:
    if argv[:1] == ["cell"] and len(argv) == 6:
        run_cell(*argv[1:])
    elif argv[:1] == ["summary"] and len(argv) == 2:
        summarise(argv[1])
    else:
        raise StageError(
            "usage: python -m stages.ablation cell <dataset> <encoder> <pooling> <dropout> <seed> | summary <dataset>"
        )


if __name__ == "__main__":
    run_main(main)
