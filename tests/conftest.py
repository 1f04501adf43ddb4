"""Shared fixtures: tiny data built in the test, a tiny random-init BERT over the mirror's vocab."""

from __future__ import annotations

import os
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
            "max_length": 32,
            "precision": "fp32",
            "torch_compile": False,
            "best_metric": "loss",
            "early_stopping_patience": 100,
            "logging_steps": 5,
            **train,
        },
    }


def write_clean(root: Path, key: str, frames: dict[str, pd.DataFrame]) -> None:
    out = root / "data" / key / "clean"
    out.mkdir(parents=True, exist_ok=True)
    for split, frame in frames.items():
        frame.to_parquet(out / f"{split}.parquet", index=False)


@pytest.fixture
def saved_model(in_tmp, tokenizer):
    """A tiny random-init classifier saved where the `toy` dataset's fine-tune puts it (data/toy/finetune/model)."""
    import torch

    from sentiment.models import ModelConfig, build_model, save_classifier

    torch.manual_seed(0)
    model = build_model(ModelConfig.model_validate(tiny_params()["model"]), tokenizer, 2, 16)
    out = in_tmp / "data" / "toy" / "finetune" / "model"
    out.mkdir(parents=True)
    save_classifier(model, tokenizer, out, {"labels": ["negative", "positive"], "max_length": 16, "base_model": "scratch"})
    return in_tmp
