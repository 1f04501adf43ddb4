"""The README's GPU profile: the `-S` overrides, applied as `dvc exp run` applies them, give the reference
run's configuration (DistilBERT, 3 epochs) with the ablation matrix at full budget, and valid params."""

from __future__ import annotations

import re
import shutil

from conftest import REPO
from sentiment.config import load_params, section
from sentiment.models.config import ModelConfig
from sentiment.models.light import LightBudget
from sentiment.models.training import TrainConfig


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
    ablations = params["ablations"]
    assert len(ablations["pooling"]) >= 2 and len(ablations["dropout"]) >= 2 and len(ablations["seeds"]) >= 3
    assert "sst2" in ablations["datasets"]
