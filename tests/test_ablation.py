"""The ablation summary: mean ± std over seeds, deltas against the final config, dev-only selection."""

import json

import pytest
import yaml

from stages.ablation import cell_name, cell_params, grid_cells, summarise
from stages.common import StageError

PARAMS = {
    "seed": 42,
    "model": {"name": "m", "pooling": "mean", "dropout": 0.1},
    "train": {"epochs": 3, "max_length": 128},
    "ablations": {
        "datasets": ["toy"],
        "pooling": ["cls", "mean"],
        "dropout": [0.1],
        "seeds": [1, 2],
        "epochs": 1,
        "train_fraction": 0.5,
        "max_length": 64,
    },
}
# dev/test accuracy per cell: mean pooling is better on dev
ACCURACY = {
    ("pretrained", "cls", 1): (0.80, 0.70),
    ("pretrained", "cls", 2): (0.82, 0.74),
    ("pretrained", "mean", 1): (0.90, 0.80),
    ("pretrained", "mean", 2): (0.88, 0.84),
    ("scratch", "mean", 1): (0.60, 0.50),
    ("scratch", "mean", 2): (0.60, 0.50),
}


def write_cells(root, params=PARAMS, skip=()):
    for encoder, pooling, dropout, seed in grid_cells(params):
        if (encoder, pooling, seed) in skip:
            continue
        dev, test = ACCURACY[(encoder, pooling, seed)]
        cell = root / "data" / "toy" / "ablations" / cell_name(encoder, pooling, dropout, seed)
        cell.mkdir(parents=True)
        figures = {split: {"accuracy": v, "f1_macro": v} for split, v in (("dev", dev), ("test", test))}
        (cell / "metrics.json").write_text(json.dumps(figures))
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def test_cells_are_the_grid_plus_a_scratch_row():
    assert grid_cells(PARAMS) == [
        ("pretrained", "cls", 0.1, 1),
        ("pretrained", "cls", 0.1, 2),
        ("pretrained", "mean", 0.1, 1),
        ("pretrained", "mean", 0.1, 2),
        ("scratch", "mean", 0.1, 1),
        ("scratch", "mean", 0.1, 2),
    ]
    cell = cell_params(PARAMS, "scratch", "cls", 0.0, 3)
    assert cell["model"] == {"name": "scratch", "pooling": "cls", "dropout": 0.0}
    assert cell["train"] == {"epochs": 1, "max_length": 64} and cell["seed"] == 3
    assert PARAMS["model"]["name"] == "m"  # the locked params are not modified


def test_summary_reports_mean_std_and_delta_vs_final(in_tmp):
    write_cells(in_tmp)
    summarise("toy")
    report = json.loads((in_tmp / "metrics" / "toy" / "ablations.json").read_text())
    cls = report["configs"]["pretrained cls dropout 0.1"]
    assert cls["seeds"] == 2
    assert cls["test_accuracy"] == pytest.approx(0.72) and cls["test_accuracy_std"] == pytest.approx(0.028284, abs=1e-6)
    assert cls["test_accuracy_delta_vs_final"] == pytest.approx(-0.10)
    assert report["configs"]["pretrained mean dropout 0.1"]["test_accuracy_delta_vs_final"] == 0
    assert report["best_on_dev"] == "pretrained mean dropout 0.1"
    assert "50% of train" in report["note"]
    assert (in_tmp / "plots" / "toy" / "ablations" / "summary.csv").exists()


def test_a_final_config_outside_the_grid_gives_null_deltas(in_tmp):
    params = {**PARAMS, "model": {**PARAMS["model"], "dropout": 0.3}}
    write_cells(in_tmp, params)
    summarise("toy")
    report = json.loads((in_tmp / "metrics" / "toy" / "ablations.json").read_text())
    assert report["configs"]["pretrained cls dropout 0.1"]["test_accuracy_delta_vs_final"] is None


def test_a_missing_cell_is_named(in_tmp):
    write_cells(in_tmp, skip={("pretrained", "cls", 2)})
    with pytest.raises(StageError, match="ablation cell missing: .*pretrained-cls-0.1-2"):
        summarise("toy")
