"""The tiny DVC profile shared by the end-to-end modules: a temporary copy of the repository
whose datasets are 300-row CSVs sampled from the mirror and whose model is a hidden-32 scratch
encoder, so every stage runs in seconds.

    python tests/dvc_tiny.py DIR    # DIR/repo after one `dvc repro`, committed; DIR/output.txt; DIR/done

conftest starts that in the background when the end-to-end tests are collected, so the run is built
once per session while the other tests run, whatever worker reaches an end-to-end test first."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from conftest import MINILM, MIRROR, REPO
from sentiment.stage import TRACE_READS, dataset_stages

SOURCES = {
    "sst2": MIRROR / "datasets/stanfordnlp/sst2/train.parquet",
    "tweets": MIRROR / "datasets/mteb/tweet_sentiment_extraction/train.parquet",
}


KEYS = ("sst2", "tweets")
# the stages run for each tiny dataset: dvc.yaml's per-dataset stages, and external (the tiny profile keeps
# an external set for every dataset)
PER_DATASET = (*dataset_stages(REPO / "dvc.yaml"), "external")
# the tiny profile's ablation grid: pooling {cls, mean} x dropout {0.1} x seed {1}, plus the scratch row
ABLATIONS = {
    "ablation_cell@sst2-pretrained-cls-0.1-1",
    "ablation_cell@sst2-pretrained-mean-0.1-1",
    "ablation_scratch@sst2-1",
    "ablation_summary@sst2",
}
# the tiny profile distils a student for every dataset (distill.datasets)
DISTILLED = ("distill", "export_distill")
ALL_STAGES = {f"{s}@{k}" for s in (*PER_DATASET, *DISTILLED) for k in KEYS} | ABLATIONS


def would_run(repo: Path) -> set[str]:
    """The stages `dvc repro` would run first: those whose own deps, params or outs changed."""
    return ran(sh(repo, "dvc", "repro", "--dry"))


def downstream(repo: Path, stages: set[str]) -> set[str]:
    """`stages` and every stage that depends on them, directly or not (`dvc dag`)."""
    edges = re.findall(r'"([^"]+)" -> "([^"]+)"', sh(repo, "dvc", "dag", "--dot", stderr=False))
    found, todo = set(stages), list(stages)
    while todo:
        node = todo.pop()
        for source, target in edges:
            if source == node and target not in found:
                found.add(target)
                todo.append(target)
    return found


def environment() -> dict[str, str]:
    """The environment for git and DVC commands in a tiny repository."""
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "DVC_NO_ANALYTICS": "1",
    }


def sh(repo: Path, *cmd: str, stderr: bool = True) -> str:
    """The command's output (stdout, then stderr unless `stderr=False`); a failure shows both."""
    result = subprocess.run(cmd, cwd=repo, env=environment(), capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + (result.stderr if stderr else "")


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def tiny_profile(params: dict, datasets: tuple[str, ...]) -> dict:
    """Small data, a hidden-32 scratch encoder, one epoch, a 2-point grid: the same stages, in seconds."""
    params["datasets"] = {key: params["datasets"][key] for key in datasets}
    for key in datasets:
        params["datasets"][key].update(source=f"data/sources/{key}/{key}.csv", split="pooled")
    params["baseline"].update(grid={"C": [1, 4], "l1_ratio": [0.0]}, cv_folds=2, n_jobs=1)
    params["model"].update(
        name="scratch",
        tokenizer=MINILM,
        pooling="cls",
        scratch={"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64},
    )
    params["train"].update(epochs=1, max_length=32, batch_size=16, logging_steps=5, precision="fp32")
    params["attention"].update(examples_per_category=1, ig_steps=4, faithfulness_examples=10)
    params["light"].update(train_fraction=1.0, max_length=32)
    params["ablations"].update(datasets=[datasets[0]], pooling=["cls", "mean"], dropout=[0.1], seeds=[1])
    params["behavior"].update(max_cases=10)
    params["distill"].update(datasets=list(datasets), layers=[0], epochs=1, batch_size=16)
    params["external"]["sets"] = {key: params["external"]["sets"][key] for key in datasets}
    for sets in params["external"]["sets"].values():
        for spec in sets.values():
            spec["max_rows"] = 20
    return params


def make_repo(root: Path, datasets: tuple[str, ...]) -> Path:
    """A git + DVC repository with the project's code and the tiny profile, committed."""
    root.mkdir()
    for name in ("dvc.yaml", "pyproject.toml", ".gitignore"):
        shutil.copy(REPO / name, root / name)
    for package in ("stages", "sentiment"):
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    sources = root / "data" / "sources"
    sources.mkdir(parents=True)
    shutil.copy(REPO / "data" / "sources" / "README.md", sources / "README.md")
    shutil.copytree(REPO / "data" / "external", root / "data" / "external")
    shutil.copytree(REPO / "data" / "behavior", root / "data" / "behavior")
    for key in datasets:
        (sources / key).mkdir()
        pd.read_parquet(SOURCES[key]).sample(300, random_state=0).to_csv(sources / key / f"{key}.csv", index=False)
    params = tiny_profile(yaml.safe_load((REPO / "params.yaml").read_text()), datasets)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(root, sys.executable, "-m", "sentiment.report.dvc_blocks")  # the plots block for the tiny profile's datasets
    sh(root, "git", "init", "-q")
    sh(root, "dvc", "init", "-q")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "tiny profile")
    return root


def set_param(repo: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params[section][key] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def build(directory: Path) -> None:
    """The shared tiny run: DIR/repo after one `dvc repro` of every stage, committed, with that repro's
    output in DIR/output.txt and what each stage read in DIR/reads; DIR/done marks success, DIR/failed holds
    the error."""
    try:
        root = make_repo(directory / "repo", KEYS)
        os.environ[TRACE_READS] = str(directory / "reads")  # each stage records what it read (test_dvc_pipeline.py)
        output = sh(root, "dvc", "repro")
        del os.environ[TRACE_READS]
        sh(root, "git", "add", "-A")
        sh(root, "git", "commit", "-qm", "tiny run")
    except Exception as err:  # the waiting tests show this
        (directory / "failed").write_text(f"{type(err).__name__}: {err}")
        raise
    (directory / "output.txt").write_text(output)
    (directory / "done").touch()


if __name__ == "__main__":
    build(Path(sys.argv[1]))
