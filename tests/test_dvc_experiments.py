"""End to end, experiments, on the session's tiny run (conftest.tiny_run), each test on its own copy:
`dvc exp run -S model.pooling=mean` reruns finetune and its downstream stages, nothing upstream, with
`dvc exp show` / `dvc metrics diff` / `dvc params diff` showing the change; dvclive's live metrics are
readable while `dvc exp run` trains; search trials are listed by `dvc exp show`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

from conftest import needs_mirror
from dvc_tiny import KEYS, environment, ran, sh

pytestmark = [needs_mirror, pytest.mark.slow, pytest.mark.xdist_group("dvc")]
DOWNSTREAM = ("finetune", "evaluate", "slices", "attention", "export", "behavior", "external", "card")
# model.pooling also names the scratch row's pooling and the summary's final config; the label audit reads
# `model` and `train` for its encoder option, and its unchanged output leaves clean as it was
POOLING_CHANGE = {f"{s}@{k}" for s in ("label_issues", *DOWNSTREAM) for k in KEYS}
POOLING_CHANGE |= {"ablation_scratch@sst2-1", "ablation_summary@sst2"}


def test_exp_run_pooling_mean_reruns_finetune_and_downstream(tiny_repo):
    repo = tiny_repo
    before = (repo / "metrics" / "tweets" / "finetune.json").read_text()
    out = sh(repo, "dvc", "exp", "run", "-S", "model.pooling=mean")
    assert ran(out) == POOLING_CHANGE
    assert (repo / "metrics" / "tweets" / "finetune.json").read_text() != before
    diff = sh(repo, "dvc", "metrics", "diff", "--json")
    assert "metrics/tweets/finetune.json" in diff and "metrics/tweets/split.json" not in diff
    assert "model.pooling" in sh(repo, "dvc", "params", "diff")
    table = sh(repo, "dvc", "exp", "show", "--no-pager", "--md")
    assert "model.pooling" in table and "mean" in table and "f1_macro" in table


def test_live_training_metrics_are_readable_while_dvc_exp_run_trains(tiny_repo):
    """dvclive writes the fine-tune's loss and dev figures as they happen, before the stage ends."""
    repo = tiny_repo
    finetune_metrics = repo / "metrics" / "tweets" / "finetune.json"
    before = finetune_metrics.read_bytes()
    live = repo / "dvclive" / "tweets" / "metrics.json"
    shutil.rmtree(repo / "dvclive", ignore_errors=True)
    # one stage: the fine-tune (its upstream is up to date), as `dvc exp run <target>` runs it
    command = ["dvc", "exp", "run", "-S", "train.epochs=4", "-S", "train.logging_steps=1", "finetune@tweets"]
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
    assert ran(output) == {"label_issues@tweets", "finetune@tweets"}  # the audit reads `train` too
    assert seen is not None and stage_done is False, "no live metrics were readable while the fine-tune ran"
    assert {"loss", "learning_rate", "step"} <= set(seen)  # the training log so far, as transformers names it
    final = json.loads(live.read_text())
    assert "f1_macro" in final["eval"]  # dev figures per evaluation, as transformers' dvclive callback names them
    shown = json.loads(sh(repo, "dvc", "metrics", "show", "--json", "dvclive/tweets/metrics.json"))
    assert "f1_macro" in json.dumps(shown)  # the README's way to read the live log


def test_search_trials_are_listed_by_dvc_exp_show(tiny_repo):
    sh(tiny_repo, sys.executable, "-m", "stages.search", "tweets", "--sampler", "random", "--trials", "2")
    table = sh(tiny_repo, "dvc", "exp", "show", "--no-pager", "--md")
    assert "tweets-random-trial-0" in table and "tweets-random-trial-1" in table
    assert "learning_rate" in table and "dropout" in table and "dev_f1_macro" in table
