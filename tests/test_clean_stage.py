import pandas as pd
import pytest
import yaml

from conftest import REPO
from sentiment.stage import run_stage
from stages import clean


@pytest.fixture
def split_outputs(in_tmp):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(params))
    out = in_tmp / "data" / "sst2" / "split"
    out.mkdir(parents=True)
    frame = pd.DataFrame({"id": ["a", "b", "c"], "text": ["Sooo good!", "so good", "bad &amp; sad"], "label": [1, 1, 0]})
    for split in ("train", "dev", "test"):
        frame.to_parquet(out / f"{split}.parquet")
    return in_tmp


def test_clean_stage_writes_both_columns_and_drops_train_duplicates(split_outputs):
    run_stage(clean.main, clean.__doc__, argv=["sst2"])
    train = pd.read_parquet(split_outputs / "data/sst2/clean/train.parquet")
    assert list(train.columns) == ["id", "text", "text_norm", "label"]
    assert train["text"].tolist() == ["Soo good!", "so good", "bad & sad"]
    report = yaml.safe_load((split_outputs / "results/sst2/clean.json").read_text())
    assert report["train"]["rows"] == 3 and report["train"]["dropped"]["duplicate_in_train"] == 0


def test_a_split_empty_after_cleaning_fails_and_writes_nothing(split_outputs, capsys):
    pd.DataFrame({"id": ["x"], "text": ["@someone http://t.co/x"], "label": [0]}).to_parquet(
        split_outputs / "data/sst2/split/dev.parquet"
    )
    with pytest.raises(SystemExit):
        run_stage(clean.main, clean.__doc__, argv=["sst2"])
    assert "error: split 'dev' of dataset 'sst2' is empty after cleaning" in capsys.readouterr().err
    assert not (split_outputs / "data/sst2/clean").exists()
    assert not (split_outputs / "results/sst2/clean.json").exists()


def test_missing_upstream_file_is_named(in_tmp, capsys):
    (in_tmp / "params.yaml").write_text((REPO / "params.yaml").read_text())
    with pytest.raises(SystemExit):
        run_stage(clean.main, clean.__doc__, argv=["sst2"])
    assert "error: missing input file: data/sst2/split/train.parquet" in capsys.readouterr().err


def test_clean_never_reads_the_label_audit(split_outputs):
    """The audit reads clean's train, so clean comes first: `clean.drop_label_issues` is the training stages' switch."""
    params = yaml.safe_load((split_outputs / "params.yaml").read_text())
    params["clean"]["drop_label_issues"] = True
    (split_outputs / "params.yaml").write_text(yaml.safe_dump(params))
    run_stage(clean.main, clean.__doc__, argv=["sst2"])  # no data/sst2/label_issues, and no error
    assert len(pd.read_parquet(split_outputs / "data/sst2/clean/train.parquet")) == 3
