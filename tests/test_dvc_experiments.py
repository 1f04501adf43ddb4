"""End to end, experiments: on a tiny one-dataset profile (tweets, 3 classes) in a temporary copy
of the repository, a clean-only param reruns clean and what depends on it, never split; and
`dvc exp run -S model.pooling=mean` reruns finetune and its downstream stages, nothing upstream,
with `dvc exp show` / `dvc metrics diff` / `dvc params diff` showing the change. Each test works on
its own copy of the run repository, so any test passes alone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import needs_mirror
from dvc_tiny import environment, make_repo, ran, set_param, sh

pytestmark = [needs_mirror, pytest.mark.xdist_group("dvc_experiments")]
STAGES = ("split", "clean", "baseline", "finetune", "evaluate", "slices", "attention", "export", "behavior", "external", "card")
ALL_STAGES = {f"{s}@tweets" for s in STAGES} | {
    "ablation_cell@tweets-pretrained-cls-0.1-1",
    "ablation_cell@tweets-pretrained-mean-0.1-1",
    "ablation_scratch@tweets-1",
    "ablation_summary@tweets",
}
DOWNSTREAM = ("finetune", "evaluate", "slices", "attention", "export", "behavior", "external", "card")
DOWNSTREAM_OF_FINETUNE = {f"{s}@tweets" for s in DOWNSTREAM}
# model.pooling also names the scratch row's pooling and the summary's final config
POOLING_CHANGE = DOWNSTREAM_OF_FINETUNE | {"ablation_scratch@tweets-1", "ablation_summary@tweets"}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> Path:
    root = make_repo(tmp_path_factory.mktemp("experiments") / "repo", ("tweets",))
    assert ran(sh(root, "dvc", "repro")) == ALL_STAGES
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "tiny run")
    return root


@pytest.fixture
def repo(first_run, tmp_path) -> Path:
    """A private copy of the run repository (git history and DVC cache included)."""
    return Path(shutil.copytree(first_run, tmp_path / "repo", symlinks=True))


def test_a_clean_param_reruns_clean_and_downstream_only(repo):
    set_param(repo, "clean", "lemmatize", False)  # changes text_norm, so the clean outputs change
    # the ablation cells rerun but train on `text`, which lemmatising does not touch: their outputs
    # are byte-identical, so DVC skips the summary
    assert ran(sh(repo, "dvc", "repro")) == ALL_STAGES - {"split@tweets", "ablation_summary@tweets"}


def test_exp_run_pooling_mean_reruns_finetune_and_downstream(repo):
    before = (repo / "metrics" / "tweets" / "finetune.json").read_text()
    out = sh(repo, "dvc", "exp", "run", "-S", "model.pooling=mean")
    assert ran(out) == POOLING_CHANGE
    assert (repo / "metrics" / "tweets" / "finetune.json").read_text() != before
    diff = sh(repo, "dvc", "metrics", "diff", "--json")
    assert "metrics/tweets/finetune.json" in diff and "metrics/tweets/split.json" not in diff
    assert "model.pooling" in sh(repo, "dvc", "params", "diff")
    table = sh(repo, "dvc", "exp", "show", "--no-pager", "--md")
    assert "model.pooling" in table and "mean" in table and "f1_macro" in table


def test_live_training_metrics_are_readable_while_dvc_exp_run_trains(repo):
    """dvclive writes the fine-tune's loss and dev figures as they happen, before the stage ends."""
    finetune_metrics = repo / "metrics" / "tweets" / "finetune.json"
    before = finetune_metrics.read_bytes()
    live = repo / "dvclive" / "tweets" / "metrics.json"
    shutil.rmtree(repo / "dvclive", ignore_errors=True)
    command = ["dvc", "exp", "run", "-S", "train.epochs=4", "-S", "train.logging_steps=1"]
    proc = subprocess.Popen(command, cwd=repo, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen, stage_done = None, None
    while proc.poll() is None and seen is None:
        if live.exists():
            try:
                seen = json.loads(live.read_text())
            except json.JSONDecodeError:  # caught mid-write
                continue
            # DVC removes a stage's outputs before running it; they are back, changed, once it has finished
            stage_done = finetune_metrics.exists() and finetune_metrics.read_bytes() != before
        time.sleep(0.01)
    output = proc.communicate()[0]
    assert proc.returncode == 0, output[-3000:]
    assert seen is not None and stage_done is False, "no live metrics were readable while the fine-tune ran"
    assert {"loss", "learning_rate", "step"} <= set(seen)  # the training log so far, as transformers names it
    final = json.loads(live.read_text())
    assert "f1_macro" in final["eval"]  # dev figures per evaluation, as transformers' dvclive callback names them
    shown = json.loads(sh(repo, "dvc", "metrics", "show", "--json", stderr=False))
    assert "dvclive/tweets/metrics.json" in json.dumps(shown)  # declared in dvc.yaml, so DVC reads it


def test_search_trials_are_listed_by_dvc_exp_show(repo):
    sh(repo, sys.executable, "-m", "stages.search", "tweets", "--sampler", "random", "--trials", "2")
    table = sh(repo, "dvc", "exp", "show", "--no-pager", "--md")
    assert "tweets-random-trial-0" in table and "tweets-random-trial-1" in table
    assert "learning_rate" in table and "dropout" in table and "dev_f1_macro" in table
