import pandas as pd
import pytest

from sentiment.config import UserError
from sentiment.data.hub import load_source, resolve, resolve_model


def test_mirror_resolves_ids_it_holds(tmp_path, monkeypatch):
    (tmp_path / "datasets" / "org" / "data").mkdir(parents=True)
    pd.DataFrame({"text": ["a"], "label": [0]}).to_parquet(tmp_path / "datasets" / "org" / "data" / "train.parquet")
    monkeypatch.setenv("HUB_MIRROR", str(tmp_path))
    assert resolve("datasets", "org/data") == str(tmp_path / "datasets" / "org" / "data")
    assert list(load_source("org/data")) == ["train"]


def test_absent_id_offline_is_one_line_error_naming_id_and_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("HUB_MIRROR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="'org/missing-model'.*HUB_MIRROR") as err:
        resolve_model("org/missing-model")
    assert "\n" not in str(err.value)


def test_absent_id_online_falls_back_to_the_hub_id(tmp_path, monkeypatch):
    monkeypatch.setenv("HUB_MIRROR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert resolve_model("distilbert-base-uncased") == "distilbert-base-uncased"


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_local_files_are_one_train_split(tmp_path, suffix):
    frame = pd.DataFrame({"text": ["good", "bad"], "label": ["pos", "neg"]})
    path = tmp_path / f"data{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    loaded = load_source(str(path))
    pd.testing.assert_frame_equal(loaded["train"], frame)


def test_missing_local_file_is_named(tmp_path):
    with pytest.raises(UserError, match="dataset file not found: .*nope.csv"):
        load_source(str(tmp_path / "nope.csv"))
