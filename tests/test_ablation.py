"""The ablation summary: mean ± std over seeds, deltas against the final config, dev-only selection."""

import json
import math

import pytest
import yaml

from sentiment.config import UserError
from sentiment.models.ablation import cell_name, cell_params, grid_cells, read_cells, summarise

PARAMS = {
    "seed": 42,
    "model": {
        "name": "m",
        "pooling": "mean",
        "dropout": 0.1,
        "tokenizer": None,
        "scratch": {"hidden_size": 8, "num_layers": 1, "num_heads": 1, "intermediate_size": 8},
    },
    "train": {"epochs": 3, "max_length": 128},
    "light": {"epochs": 1, "train_fraction": 0.5, "max_length": 64},
    "ablations": {"datasets": ["toy"], "pooling": ["cls", "mean"], "dropout": [0.1], "seeds": [1, 2]},
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
    # the scratch encoder reads the configured model's tokenizer when model.tokenizer is unset
    assert {k: cell["model"][k] for k in ("name", "tokenizer", "pooling", "dropout")} == {
        "name": "scratch",
        "tokenizer": "m",
        "pooling": "cls",
        "dropout": 0.0,
    }
    assert cell["train"] == {"epochs": 1, "max_length": 64} and cell["seed"] == 3
    assert (
        cell_params({**PARAMS, "model": {**PARAMS["model"], "tokenizer": "t"}}, "scratch", "cls", 0.0, 3)["model"]["tokenizer"]
        == "t"
    )
    assert cell_params(PARAMS, "pretrained", "cls", 0.0, 3)["model"]["name"] == "m"
    assert PARAMS["model"]["name"] == "m" and PARAMS["model"]["tokenizer"] is None  # the locked params are not modified


def summary_of(root, params=PARAMS):
    return summarise(read_cells(root / "data" / "toy" / "ablations", params), params)[1]


def test_summary_reports_mean_std_and_delta_vs_final(in_tmp):
    write_cells(in_tmp)
    report = summary_of(in_tmp)
    cls = report["configs"]["pretrained cls dropout 0.1"]
    assert cls["seeds"] == 2
    assert cls["test_accuracy"] == pytest.approx(0.72) and cls["test_accuracy_std"] == pytest.approx(0.028284, abs=1e-6)
    assert cls["test_accuracy_delta_vs_final"] == pytest.approx(-0.10)
    assert report["configs"]["pretrained mean dropout 0.1"]["test_accuracy_delta_vs_final"] == 0
    assert report["best_on_dev"] == "pretrained mean dropout 0.1"
    assert "1 epoch(s) on 50% of train" in report["note"]


def test_a_final_config_outside_the_grid_gives_null_deltas(in_tmp):
    params = {**PARAMS, "model": {**PARAMS["model"], "dropout": 0.3}}
    write_cells(in_tmp, params)
    report = summary_of(in_tmp, params)
    assert math.isnan(report["configs"]["pretrained cls dropout 0.1"]["test_accuracy_delta_vs_final"])  # null in the JSON


def test_a_missing_cell_is_named(in_tmp):
    write_cells(in_tmp, skip={("pretrained", "cls", 2)})
    with pytest.raises(UserError, match="ablation cell missing: .*pretrained-cls-0.1-2"):
        summary_of(in_tmp)
