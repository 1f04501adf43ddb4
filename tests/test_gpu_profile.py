"""The README's GPU profile: the `-S` overrides, applied as `dvc exp run` applies them, give the reference
run's configuration (DistilBERT, 3 epochs) with the ablation matrix at full budget, and valid params."""

from __future__ import annotations

import re
import shutil
import typing

import yaml

from conftest import REPO
from sentiment.config import load_params, section
from sentiment.models.config import LightBudget, ModelConfig, Pooling
from sentiment.models.training import TrainConfig


def flat(tree: dict, prefix: str = "") -> dict:
    """`{"a.b": value}` for every leaf of a nested dict."""
    out = {}
    for name, value in tree.items():
        out.update(flat(value, f"{prefix}{name}.") if isinstance(value, dict) else {f"{prefix}{name}": value})
    return out


def readme_command() -> str:
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- gpu-profile -->\n```bash\n(.*?)```", text, re.S)
    assert block, "README.md has no gpu-profile block"
    return block.group(1).replace("\\\n", " ")


def test_the_gpu_profile_is_the_reference_configuration_at_full_budget(tmp_path):
    from dvc.utils.hydra import apply_overrides

    command = readme_command()
    assert command.split()[:3] == ["dvc", "exp", "run"]
    overrides = re.findall(r"-S (\S+)", command)
    params_file = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params_file)
    apply_overrides(params_file, overrides)  # what `dvc exp run -S` does to params.yaml
    params = load_params(params_file)
    model = section(ModelConfig, params, "model")
    train = section(TrainConfig, params, "train")
    light = section(LightBudget, params, "light")
    assert model.name == "distilbert-base-uncased" and train.epochs == 3
    assert (light.epochs, light.train_fraction, light.max_length) == (train.epochs, 1.0, train.max_length)
    # the overrides change what they name, to the values written, and nothing else
    before, after = flat(load_params(REPO / "params.yaml")), flat(params)
    written = {name: yaml.safe_load(value) for name, value in (override.split("=", 1) for override in overrides)}
    assert {name for name in after if after[name] != before.get(name)} == {n for n in written if written[n] != before[n]}
    assert {name: after[name] for name in written} == written
    # the ablation matrix: every pooling the model has, distinct dropouts and seeds, the reference's own cell among them
    ablations = params["ablations"]
    assert sorted(ablations["pooling"]) == sorted(typing.get_args(Pooling))
    assert len(set(ablations["dropout"])) == len(ablations["dropout"]) >= 2
    assert len(set(ablations["seeds"])) == len(ablations["seeds"]) >= 3
    assert model.pooling in ablations["pooling"] and model.dropout in ablations["dropout"]
    assert "sst2" in ablations["datasets"] and set(ablations["datasets"]) <= set(params["datasets"])
