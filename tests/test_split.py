import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO
from sentiment.config import DatasetConfig, UserError, section
from sentiment.data.splitting import SplitConfig, find_leakage, make_splits, standardise, untracked_source_warning

RAW_DS = {
    "source": "toy.csv",
    "text_column": "t",
    "label_column": "y",
    "id_column": "k",
    "labels": ["neg", "neu", "pos"],
    "split": "pooled",
}
RAW_CFG = {
    "seed": 1,
    "dev_fraction": 0.1,
    "pooled_dev_fraction": 0.15,
    "pooled_test_fraction": 0.15,
    "train_fraction": 1.0,
    "drop_leaked": True,
}


def source(n=600, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=n, p=[0.2, 0.5, 0.3])
    return pd.DataFrame({"k": [f"x{i}" for i in range(n)], "t": [f"text {i}" for i in range(n)], "y": labels})


def test_pooled_split_is_stratified_disjoint_and_deterministic():
    frames = {"train": source()}
    a = make_splits(frames, DS, CFG)
    b = make_splits(frames, DS, CFG)
    sizes = {k: len(v) for k, v in a.items()}
    assert sizes == {"train": 420, "dev": 90, "test": 90}
    overall = np.bincount(frames["train"]["y"], minlength=3) / 600
    for name, frame in a.items():
        counts = np.bincount(frame["label"], minlength=3)
        # within one example per class of the exact stratified share
        assert np.all(np.abs(counts - overall * len(frame)) <= 1), name
        pd.testing.assert_frame_equal(frame, b[name])
    ids = [set(f["id"]) for f in a.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])


def test_holdout_uses_the_named_test_split_and_carves_dev():
    ds = dataset(split="holdout", test_split="validation")
    frames = {"train": source(500), "validation": source(50, seed=1), "test": source(50).assign(y=-1)}
    out = make_splits(frames, ds, CFG)
    assert len(out["test"]) == 50 and out["test"]["id"].str.startswith("validation:").all()
    assert len(out["dev"]) == 50 and len(out["train"]) == 450


def test_train_fraction_subsamples_train_only():
    out = make_splits({"train": source()}, DS, split_cfg(train_fraction=0.5))
    assert len(out["train"]) == 210 and len(out["dev"]) == 90


def test_string_labels_are_mapped_by_name():
    frame = source(30).assign(y=lambda d: d["y"].map({0: "neg", 1: "neu", 2: "pos"}))
    out = standardise(frame, DS, "train")
    assert out["label"].tolist() == source(30)["y"].tolist()


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (source(20).drop(columns="t"), "missing column 't'"),
        (source(20).assign(y=7), "unknown label ids [7]"),
        (source(20).assign(y="great"), "unknown labels ['great']"),
        (source(20).assign(t=lambda d: d["t"].where(d.index != 3)), "1 NaN texts"),
    ],
)
def test_bad_sources_fail_with_one_line(frame, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        standardise(frame, DS, "train")
    assert "\n" not in str(err.value)


def test_invalid_fraction_param_is_named():
    with pytest.raises(UserError, match="split.train_fraction"):
        make_splits({"train": source()}, DS, split_cfg(train_fraction=0))


def test_leakage_finds_normalised_duplicates():
    splits = {
        "train": pd.DataFrame({"id": ["a", "b"], "text": ["Great film!", "other"], "label": [1, 0]}),
        "dev": pd.DataFrame({"id": ["c"], "text": ["great   FILM"], "label": [1]}),
        "test": pd.DataFrame({"id": ["d"], "text": ["other"], "label": [0]}),
    }
    leaks = find_leakage(splits)
    assert sorted(zip(leaks["id"], leaks["duplicate_of"], strict=True)) == [("a", "dev"), ("b", "test")]


def test_only_local_files_outside_the_datasets_own_source_folder_warn(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert untracked_source_warning("stanfordnlp/sst2", "mine") is None  # a Hub id
    assert untracked_source_warning("data/sources/mine/my.csv", "mine") is None
    assert untracked_source_warning(str(tmp_path / "data" / "sources" / "mine" / "sub" / "my.parquet"), "mine") is None
    for outside in ("my.csv", "data/my.tsv", "data/sources/my.csv", "data/sources/other/my.csv", "/elsewhere/my.parquet"):
        warning = untracked_source_warning(outside, "mine")
        assert outside in warning and "data/sources/mine/" in warning


def test_each_split_stage_depends_on_its_own_source_folder_and_every_dataset_has_one():
    split = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["split"]
    assert "data/sources/${key}" in split["do"]["deps"] and "data/sources" not in split["do"]["deps"]
    for key in yaml.safe_load((REPO / "params.yaml").read_text())["datasets"]:
        assert (REPO / "data" / "sources" / key).is_dir(), f"dvc repro needs data/sources/{key}/"


def dataset(**overrides) -> DatasetConfig:
    return section(DatasetConfig, {"d": {**RAW_DS, **overrides}}, "d")


def split_cfg(**overrides) -> SplitConfig:
    return section(SplitConfig, {"split": {**RAW_CFG, **overrides}}, "split")


DS, CFG = dataset(), split_cfg()
