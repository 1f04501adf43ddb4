"""The ablation summary: mean ± std over seeds, deltas against the final config, dev-only selection."""

import json
import math

import pytest
import yaml

from conftest import recipe_of, tiny_params
from sentiment.config import UserError
from sentiment.models.ablation import AblationConfig, cell_model, cell_name, grid_cells, read_cells, summarise
from sentiment.models.config import EncoderChoice, LightBudget, ModelConfig

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


def sections(params: dict) -> tuple[AblationConfig, ModelConfig]:
    return AblationConfig(**params["ablations"]), ModelConfig(**params["model"])


def write_cells(root, params=PARAMS, skip=()):
    for encoder, pooling, dropout, seed in grid_cells(*sections(params)):
        if (encoder, pooling, seed) in skip:
            continue
        dev, test = ACCURACY[(encoder, pooling, seed)]
        cell = root / "data" / "toy" / "ablations" / cell_name(encoder, pooling, dropout, seed)
        cell.mkdir(parents=True)
        figures = {split: {"accuracy": v, "f1_macro": v} for split, v in (("dev", dev), ("test", test))}
        (cell / "metrics.json").write_text(json.dumps(figures))
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def test_cells_are_the_grid_plus_a_scratch_row():
    assert grid_cells(*sections(PARAMS)) == [
        ("pretrained", "cls", 0.1, 1),
        ("pretrained", "cls", 0.1, 2),
        ("pretrained", "mean", 0.1, 1),
        ("pretrained", "mean", 0.1, 2),
        ("scratch", "mean", 0.1, 1),
        ("scratch", "mean", 0.1, 2),
    ]
    # an int dropout stays one, spelled as dvc.yaml interpolates it in the cell's directory name
    spelled = {**PARAMS["ablations"], "dropout": [0, 0.5]}
    assert [cell_name(*c) for c in grid_cells(AblationConfig(**spelled), ModelConfig(**PARAMS["model"]))][::2] == [
        "pretrained-cls-0-1",
        "pretrained-cls-0.5-1",
        "pretrained-mean-0-1",
        "pretrained-mean-0.5-1",
        "scratch-mean-0.1-1",
    ]


def test_a_cell_model_is_the_configured_encoder_or_a_scratch_one_with_the_cells_head():
    configured = EncoderChoice(**{**PARAMS["model"], "tokenizer": None})
    scratch = cell_model(configured, "scratch", "cls", 0.0)
    # the scratch encoder reads the configured model's tokenizer when model.tokenizer is unset
    assert (scratch.name, scratch.tokenizer, scratch.pooling, scratch.dropout) == ("scratch", "m", "cls", 0.0)
    assert (
        cell_model(
            EncoderChoice(**{**PARAMS["model"], "tokenizer": "t"}),
            "scratch",
            "cls",
            0.0,
        ).tokenizer
        == "t"
    )
    pretrained = cell_model(configured, "pretrained", "mean", 0.5)
    assert (pretrained.name, pretrained.pooling, pretrained.dropout) == ("m", "mean", 0.5)
    assert configured.name == "m"  # the configured section is not modified


def test_a_cell_recipe_applies_the_light_budget():
    params = tiny_params()
    recipe = recipe_of(params).light(LightBudget(**PARAMS["light"]), model={"dropout": 0.0})
    assert (recipe.train.epochs, recipe.train.max_length, recipe.model.dropout) == (1, 64, 0.0)
    assert recipe.train.learning_rate == params["train"]["learning_rate"]  # the rest of the recipe is the configured one


def summary_of(root, params=PARAMS):
    grid, model = sections(params)
    return summarise(read_cells(root / "data" / "toy" / "ablations", grid, model), LightBudget(**params["light"]), model)[1]


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
