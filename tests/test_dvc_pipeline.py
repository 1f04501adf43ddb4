"""End to end: the real `dvc repro` on a tiny profile, in a temporary copy of the repository."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import MIRROR, REPO, needs_mirror

pytestmark = needs_mirror
PER_DATASET = ("split", "clean", "baseline", "finetune", "evaluate", "slices", "attention", "export", "card")
# the tiny profile's ablation grid: pooling {cls, mean} x dropout {0.1} x seed {1}, plus the scratch row
ABLATIONS = {
    "ablation_cell@sst2-pretrained-cls-0.1-1",
    "ablation_cell@sst2-pretrained-mean-0.1-1",
    "ablation_scratch@sst2-1",
    "ablation_summary@sst2",
}
ALL_STAGES = {f"{s}@{k}" for s in PER_DATASET for k in ("sst2", "tweets")} | ABLATIONS
DOWNSTREAM_OF_FINETUNE = {
    f"{s}@{k}" for s in ("finetune", "evaluate", "slices", "attention", "export", "card") for k in ("sst2", "tweets")
}
# model.pooling also names the scratch row's pooling and the summary's final config
POOLING_CHANGE = DOWNSTREAM_OF_FINETUNE | {"ablation_scratch@sst2-1", "ablation_summary@sst2"}


def sh(repo: Path, *cmd: str) -> str:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "DVC_NO_ANALYTICS": "1",
    }
    result = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def tiny_profile(params: dict) -> dict:
    """Small data, a hidden-32 scratch encoder, one epoch, a 2-point grid: the same stages, in seconds."""
    for key in ("sst2", "tweets"):
        params["datasets"][key].update(source=f"tiny/{key}.csv", split="pooled")
    params["baseline"].update(grid={"C": [1, 4], "l1_ratio": [0.0]}, cv_folds=2, n_jobs=1)
    params["model"].update(
        name="scratch", pooling="cls", scratch={"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64}
    )
    params["train"].update(epochs=1, max_length=32, batch_size=16, logging_steps=5, precision="fp32")
    params["attention"].update(examples_per_category=1, ig_steps=4, faithfulness_examples=10)
    params["ablations"].update(
        datasets=["sst2"], pooling=["cls", "mean"], dropout=[0.1], seeds=[1], train_fraction=1.0, max_length=32
    )
    return params


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pipeline") / "repo"
    root.mkdir()
    for name in ("dvc.yaml", "pyproject.toml", ".gitignore"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "stages", root / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "tiny").mkdir()
    sources = {
        "sst2": MIRROR / "datasets/stanfordnlp/sst2/train.parquet",
        "tweets": MIRROR / "datasets/mteb/tweet_sentiment_extraction/train.parquet",
    }
    for key, path in sources.items():
        pd.read_parquet(path).sample(300, random_state=0).to_csv(root / "tiny" / f"{key}.csv", index=False)
    params = tiny_profile(yaml.safe_load((REPO / "params.yaml").read_text()))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(root, "git", "init", "-q")
    sh(root, "dvc", "init", "-q")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "tiny profile")
    return root


def set_param(repo: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params[section][key] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_repro_runs_every_stage_then_nothing(repo):
    assert ran(sh(repo, "dvc", "repro")) == ALL_STAGES
    for key in ("sst2", "tweets"):
        for name in ("split", "clean", "baseline", "finetune", "evaluate", "slices", "attribution", "export"):
            assert (repo / "metrics" / key / f"{name}.json").exists()
        card = (repo / "reports" / key / "MODEL_CARD.md").read_text()
        assert "## Exported forms (test)" in card and ("## Ablations" in card) == (key == "sst2")
    ablations = json.loads((repo / "metrics" / "sst2" / "ablations.json").read_text())
    assert set(ablations["configs"]) == {"pretrained cls dropout 0.1", "pretrained mean dropout 0.1", "scratch cls dropout 0.1"}
    assert ablations["configs"]["pretrained cls dropout 0.1"]["test_accuracy_delta_vs_final"] == 0
    second = sh(repo, "dvc", "repro")
    assert ran(second) == set()
    assert "up to date" in sh(repo, "dvc", "status")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "tiny run")


def test_push_then_pull_in_a_fresh_clone_reruns_nothing(repo, tmp_path):
    """A GPU user pushes once; a colleague clones, pulls and reruns nothing."""
    remote = tmp_path / "remote"
    sh(repo, "dvc", "remote", "add", "--local", "-d", "shared", str(remote))
    sh(repo, "dvc", "push", "--run-cache")
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    sh(clone, "dvc", "remote", "add", "--local", "-d", "shared", str(remote))
    sh(clone, "dvc", "pull", "--run-cache")
    assert (clone / "data" / "sst2" / "finetune" / "model" / "head.json").exists()
    assert ran(sh(clone, "dvc", "repro")) == set()
    assert sh(clone, "dvc", "metrics", "diff", "--json").strip() in ("", "{}")


def test_forced_reruns_give_byte_identical_committed_files(repo):
    """Same inputs, same bytes: metrics, plot CSVs, figures, model cards and dvc.lock do not change."""
    for stage in ("split@tweets", "baseline@sst2", "finetune@sst2", "evaluate@sst2", "slices@sst2", "card@sst2"):
        sh(repo, "dvc", "repro", "--force", "--single-item", stage)
    assert sh(repo, "git", "status", "--porcelain").strip() == ""
    assert "up to date" in sh(repo, "dvc", "status")


def test_a_clean_param_reruns_clean_and_downstream_only(repo):
    set_param(repo, "clean", "lemmatize", False)  # changes text_norm, so the clean outputs change
    assert ran(sh(repo, "dvc", "repro")) == ALL_STAGES - {"split@sst2", "split@tweets"}


def test_an_evaluate_param_reruns_evaluate_only(repo):
    set_param(repo, "evaluate", "ece_bins", 10)
    # evaluate, and what reads its outputs: slices (evaluate.json) and the model cards (all metrics)
    assert ran(sh(repo, "dvc", "repro")) == {f"{s}@{k}" for s in ("evaluate", "slices", "card") for k in ("sst2", "tweets")}
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "params changed")


def test_exp_run_pooling_mean_reruns_finetune_and_downstream(repo):
    before = (repo / "metrics" / "sst2" / "finetune.json").read_text()
    out = sh(repo, "dvc", "exp", "run", "-S", "model.pooling=mean")
    assert ran(out) == POOLING_CHANGE
    assert (repo / "metrics" / "sst2" / "finetune.json").read_text() != before
    diff = sh(repo, "dvc", "metrics", "diff", "--json")
    assert "metrics/sst2/finetune.json" in diff and "metrics/sst2/split.json" not in diff
    assert "model.pooling" in sh(repo, "dvc", "params", "diff")
    assert "finetune.json" in sh(repo, "dvc", "exp", "show", "--no-pager", "--md")


def test_plots_render_offline_in_headless_chromium(repo):
    if not shutil.which("chromium"):
        pytest.skip("needs Debian's chromium")
    sh(repo, sys.executable, "-m", "stages.plots_template")
    sh(repo, "dvc", "config", "plots.html_template", "offline_plots.html")
    shutil.copy(REPO / "bench" / "check_plots_offline.py", repo / "check_plots_offline.py")
    out = sh(repo, sys.executable, "check_plots_offline.py", "--out", "dvc_plots", "--screenshot", "shot.png")
    assert "charts drawn" in out
    assert "cdn.jsdelivr" not in (repo / "dvc_plots" / "index.html").read_text()
