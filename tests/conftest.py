"""Shared fixtures: tiny data built in the test, a tiny random-init BERT over the mirror's vocab.

Under CI=true a test that would skip (no Hub mirror, NLTK data, browser or database) fails instead, so a
green CI run has run every test."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.get("HUB_MIRROR", REPO.parent / "shared" / "hub"))
MINILM = "sentence-transformers/all-MiniLM-L6-v2"

if "HUB_MIRROR" not in os.environ and MIRROR.is_dir():
    os.environ["HUB_MIRROR"] = str(MIRROR)
if "NLTK_DATA" not in os.environ and (REPO.parent / "shared" / "nltk_data").is_dir():
    os.environ["NLTK_DATA"] = str(REPO.parent / "shared" / "nltk_data")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
CI = os.environ.get("CI") == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where every test must run: {reason}"


needs_mirror = pytest.mark.skipif(not (MIRROR / "models" / MINILM).is_dir(), reason="needs the offline Hub mirror (HUB_MIRROR)")


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run a test from an empty directory (stages read params.yaml and write data/ relative to cwd)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    path = MIRROR / "models" / MINILM
    if not (path / "tokenizer.json").exists():
        pytest.skip("needs the offline Hub mirror (HUB_MIRROR)")
    # the mirror's tokenizer files (transformers 5's BertTokenizerFast(vocab_file=...) keeps only the specials)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tokenizer.vocab_size > 1000, "the mirror's vocabulary did not load"
    return tokenizer


def toy_sentiment(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """A separable 2-class toy task: positive words vs negative words."""
    rng = np.random.default_rng(seed)
    pos = ["good", "great", "lovely", "excellent", "wonderful"]
    neg = ["bad", "awful", "terrible", "boring", "dreadful"]
    filler = ["the", "film", "was", "plot", "really", "quite", "story"]
    rows = []
    for i in range(n):
        label = i % 2
        words = list(rng.choice(filler, 4)) + list(rng.choice(pos if label else neg, 2))
        rng.shuffle(words)
        rows.append({"id": f"r{i}", "text": " ".join(words), "text_norm": " ".join(words), "label": label})
    return pd.DataFrame(rows)


def repo_params() -> dict:
    """The repository's params.yaml, read as the pipeline reads it (a fresh copy each call): the sections have no
    defaults of their own, so a test that needs one whole takes it from here."""
    from sentiment.config import load_params

    return load_params(REPO / "params.yaml")


def repo_cleaning():
    """The light cleaning the repository's params.yaml `clean` section gives transformer inputs."""
    from sentiment.data.text import CleanConfig

    return CleanConfig(**repo_params()["clean"]).light()


def recipe_of(params: dict):
    """The fine-tuning recipe of a params dict (validated as a stage validates it)."""
    from sentiment.config import Params
    from sentiment.models.config import Recipe

    return Recipe.of(Params(params))


TOY_NAMES = ["negative", "positive"]


def tiny_params(**train) -> dict:
    """A params dict for the finetune functions: a 2-layer hidden-32 scratch encoder."""
    return {
        "seed": 7,
        "datasets": {
            "toy": {"source": "toy.csv", "text_column": "text", "label_column": "label", "labels": ["negative", "positive"]}
        },
        "model": {
            "name": "scratch",
            "pooling": "cls",
            "dropout": 0.0,
            "tokenizer": MINILM,
            "scratch": {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64},
        },
        "clean": {**repo_params()["clean"], "drop_label_issues": False},
        "predict": repo_params()["predict"],
        "train": {
            "epochs": 8,
            "learning_rate": 0.003,
            "batch_size": 16,
            "eval_batch_size": 64,
            "grad_accum": 1,
            "weight_decay": 0.0,
            "warmup_ratio": 0.0,
            "max_grad_norm": 1.0,
            "label_smoothing": 0.0,
            "freeze_embeddings": False,
            "max_length": 32,
            "precision": "fp32",
            "torch_compile": False,
            "best_metric": "loss",
            "early_stopping_patience": 100,
            "logging_steps": 5,
            **train,
        },
    }


def truncated_logits(model, tokenizer, texts: list[str], max_length: int) -> np.ndarray:
    """The scoring engine's torch fp32 logits, long texts truncated: a trained model's plain answer."""
    from sentiment.models.engine import Reading, score_logits, torch_backend

    truncate = Reading(long_text="truncate", window_overlap=0.0)
    return score_logits(torch_backend(model), tokenizer, texts, max_length, 16, truncate)


def write_clean(root: Path, key: str, frames: dict[str, pd.DataFrame]) -> None:
    out = root / "data" / key / "clean"
    out.mkdir(parents=True, exist_ok=True)
    for split, frame in frames.items():
        frame.to_parquet(out / f"{split}.parquet", index=False)


@pytest.fixture
def saved_model(in_tmp, tokenizer):
    """A tiny random-init classifier saved where the `toy` dataset's fine-tune puts it (data/toy/finetune/model)."""
    import torch

    from sentiment.models.classifier import build_model, save_classifier
    from sentiment.models.config import ModelConfig

    torch.manual_seed(0)
    model = build_model(ModelConfig.model_validate(tiny_params()["model"]), tokenizer, 2, 16)
    out = in_tmp / "data" / "toy" / "finetune" / "model"
    out.mkdir(parents=True)
    facts = {"model": "finetune", "dataset": "toy", "temperature": 1.0, "test": {"accuracy": 0.5, "f1_macro": 0.5}}
    save_classifier(
        model, tokenizer, out, {"labels": ["negative", "positive"], "max_length": 16, "base_model": "scratch", **facts}
    )
    return in_tmp


# --- the shared tiny run of the end-to-end modules ------------------------------------------------

TINY_DIR = "SENTIMENT_TINY_RUN"  # set by the controlling process; the xdist workers inherit it


def pytest_configure(config):
    if not hasattr(config, "workerinput"):  # the controlling process (or the only one)
        os.environ[TINY_DIR] = tempfile.mkdtemp(prefix="sentiment-tiny-run-")


def pytest_unconfigure(config):
    if not hasattr(config, "workerinput") and (directory := os.environ.pop(TINY_DIR, None)):
        pid = Path(directory) / "pid"
        if pid.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid.read_text()), signal.SIGTERM)
        shutil.rmtree(directory, ignore_errors=True)


def start_tiny_run() -> Path:
    """Start building the tiny run in the background, once per session (the first caller wins)."""
    directory = Path(os.environ[TINY_DIR])
    try:
        os.close(os.open(directory / "started", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return directory
    with (directory / "build.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "dvc_tiny.py"), str(directory)], stdout=log, stderr=log)
    (directory / "pid").write_text(str(proc.pid))
    return directory


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.hookimpl(trylast=True)  # after `-m`/`-k` deselection: a run without end-to-end tests builds nothing
def pytest_collection_modifyitems(config, items):
    """End-to-end tests run last, and the tiny run they share starts building now, beside the other tests."""
    end_to_end = [item for item in items if "tiny_run" in getattr(item, "fixturenames", ())]
    if end_to_end:
        items[:] = [item for item in items if item not in end_to_end] + end_to_end
        start_tiny_run()
        if hasattr(config, "workerinput"):
            os.nice(5)  # test workers yield the CPU to the build they will wait for (it keeps niceness 0)


@pytest.fixture(scope="session")
def tiny_run() -> tuple[Path, str]:
    """The tiny-profile repository (tests/dvc_tiny.py) after one real `dvc repro` of every stage, committed,
    and that repro's output; built once per session. Tests read it, or change a copy (`tiny_repo`)."""
    directory = start_tiny_run()
    pid = int((directory / "pid").read_text()) if (directory / "pid").exists() else None
    deadline = time.monotonic() + 1800
    while not (directory / "done").exists():
        if (directory / "failed").exists() or time.monotonic() > deadline or (pid and not running(pid)):
            time.sleep(0.5)  # a marker written just before the process ended
            if (directory / "done").exists():
                break
            pytest.fail("the tiny run failed: " + (directory / "build.log").read_text()[-3000:])
        time.sleep(0.5)
    return directory / "repo", (directory / "output.txt").read_text()


@pytest.fixture
def tiny_repo(tiny_run, tmp_path) -> Path:
    """A private copy of the run repository (git history and DVC cache, 50 MB) for a test that changes it."""
    return Path(shutil.copytree(tiny_run[0], tmp_path / "repo", symlinks=True))
