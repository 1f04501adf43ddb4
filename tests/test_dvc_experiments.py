"""End to end, experiments, on the session's tiny run (conftest.tiny_run), each test on its own copy:
`dvc exp run -S model.pooling=mean` reruns finetune and its downstream stages, nothing upstream, with
`dvc exp show` / `dvc metrics diff` / `dvc params diff` showing the change (`dvc exp show` and `dvc metrics show`
fitting a terminal); dvclive's live metrics are
readable while `dvc exp run` trains; search trials are listed by `dvc exp show`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

from conftest import needs_mirror
from dvc_tiny import environment, ran, sh

pytestmark = [needs_mirror, pytest.mark.slow, pytest.mark.xdist_group("dvc")]
DOWNSTREAM = (
    "finetune",
    "distill",
    "evaluate",
    "slices",
    "attention",
    "export",
    "export_distill",
    "behavior",
    "external",
    "card",
)
# model.pooling also names the scratch row's pooling and the summary's final config; the label audit has an
# encoder of its own (label_issues.encoder), so it does not follow `model`. The experiment runs the pipelines of
# tweets' card and sst2's ablation summary (the other dataset's chain is the same DAG): half the training
POOLING_TARGETS = ("card@tweets", "ablation_summary@sst2")
POOLING_CHANGE = {f"{s}@tweets" for s in DOWNSTREAM} | {"ablation_scratch@sst2-1", "ablation_summary@sst2"}
# the README's `dvc exp show`: the changed params and each dataset's test F1-macro; every other column has a "/"
# (metrics and deps; a metric's header names its file, as the datasets share each headline key)
EXP_SHOW = (
    "dvc",
    "exp",
    "show",
    "--no-pager",
    "--only-changed",
    "--drop",
    r"Created|(?!metrics/[^/]+/evaluate\.json:f1_macro).*/",
)


def test_exp_run_pooling_mean_reruns_finetune_and_downstream(tiny_repo):
    repo = tiny_repo
    before = (repo / "metrics" / "tweets" / "finetune.json").read_text()
    out = sh(repo, "dvc", "exp", "run", "-S", "model.pooling=mean", *POOLING_TARGETS)
    assert ran(out) == POOLING_CHANGE
    assert (repo / "metrics" / "tweets" / "finetune.json").read_text() != before
    diff = sh(repo, "dvc", "metrics", "diff", "--json")
    assert "metrics/tweets/finetune.json" in diff and "metrics/tweets/split.json" not in diff
    assert "model.pooling" in sh(repo, "dvc", "params", "diff")
    table = sh(repo, "dvc", "exp", "show", "--no-pager", "--md")
    assert "model.pooling" in table and "mean" in table and "f1_macro" in table
    assert_exp_show_fits(repo)


def at_columns(repo, columns: int, *command: str) -> list[str]:
    result = subprocess.run(command, cwd=repo, env={**environment(), "COLUMNS": str(columns)}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return [line.rstrip() for line in result.stdout.splitlines() if line.strip()]


def assert_exp_show_fits(repo) -> None:
    """The README's view of experiments at 200 columns: each row shows the changed param and the test F1-macro
    of the dataset it changed as numbers, the figures of the headline files."""
    lines = at_columns(repo, 200, *EXP_SHOW)
    assert max(map(len, lines)) <= 200 and "…" not in "".join(lines), "\n".join(lines)
    header = lines[1].split()
    assert header[0] == "Experiment" and {"metrics/tweets/evaluate.json:f1_macro", "model.pooling"} <= set(header), header
    rows = [line.split() for line in lines[3:] if not set(line) <= set(" ─")]
    assert len(rows) == 3, lines  # the workspace, the baseline commit, the experiment
    for row in rows:
        cells = dict(zip(header[1:], row[-(len(header) - 1) :], strict=True))  # the Experiment cell may hold several words
        assert 0 <= float(cells["metrics/tweets/evaluate.json:f1_macro"]) <= 1, row
    workspace, baseline = (dict(zip(header[1:], row[-(len(header) - 1) :], strict=True)) for row in rows[:2])
    headline = json.loads((repo / "metrics" / "tweets" / "evaluate.json").read_text())
    assert float(workspace["metrics/tweets/evaluate.json:f1_macro"]) == pytest.approx(headline["f1_macro"], abs=1e-5)
    assert (workspace["model.pooling"], baseline["model.pooling"]) == ("mean", "cls")


def test_dvc_metrics_show_fits_a_terminal(tiny_repo):
    """One row per headline file, one column per headline key: at most 220 characters (a full-screen terminal) by
    40 lines."""
    lines = at_columns(tiny_repo, 220, "dvc", "metrics", "show")
    assert len(lines) <= 40 and max(map(len, lines)) <= 220, "\n".join(lines)
    assert len(lines) == 1 + len(list(tiny_repo.glob("metrics/*/*.json"))) and "…" not in "".join(lines)


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
    assert ran(output) == {"finetune@tweets"}  # the label audit does not read `train`
    assert seen is not None and stage_done is False, "no live metrics were readable while the fine-tune ran"
    assert {"loss", "learning_rate", "step"} <= set(seen)  # the training log so far, as transformers names it
    final = json.loads(live.read_text())
    assert "f1_macro" in final["eval"]  # dev figures per evaluation, as transformers' dvclive callback names them
    shown = json.loads(sh(repo, "dvc", "metrics", "show", "--json", "dvclive/tweets/metrics.json"))
    assert "f1_macro" in json.dumps(shown)  # the README's way to read the live log


def test_search_trials_are_listed_by_dvc_exp_show(tiny_repo):
    sh(tiny_repo, sys.executable, "-m", "sentiment.search", "tweets", "--sampler", "random", "--trials", "2")
    table = sh(tiny_repo, "dvc", "exp", "show", "--no-pager", "--md")
    assert "tweets-random-trial-0" in table and "tweets-random-trial-1" in table
    assert "learning_rate" in table and "dropout" in table and "dev_f1_macro" in table
