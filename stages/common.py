"""Shared plumbing for every stage: params, one-line errors, atomic writes."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ruamel.yaml import YAML

PARAMS_FILE = Path("params.yaml")


class StageError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


def load_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """Read params.yaml (DVC runs every stage from the repository root).

    Read as YAML 1.2, as DVC reads and rewrites it (`dvc exp run -S`): a bare `no` is the word,
    not the YAML 1.1 boolean PyYAML would make of it.
    """
    if not path.exists():
        raise StageError(f"params file not found: {path}")
    with path.open() as f:
        return YAML(typ="safe", pure=True).load(f)


def dataset_params(params: dict[str, Any], key: str) -> dict[str, Any]:
    """The `datasets.<key>` section, or a one-line error naming the key."""
    datasets = params.get("datasets", {})
    if key not in datasets:
        raise StageError(f"unknown dataset key {key!r} (params.yaml datasets: {sorted(datasets)})")
    return datasets[key]


def require_choice(name: str, value: Any, choices: list[Any] | tuple[Any, ...]) -> Any:
    """Validate a categorical param before any work starts."""
    if value not in choices:
        raise StageError(f"invalid param {name}={value!r}: expected one of {list(choices)}")
    return value


def require_range(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> Any:
    """Validate a numeric param lies in [low, high] (or (low, high] with low_open)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (low < value if low_open else low <= value) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise StageError(f"invalid param {name}={value!r}: expected a number in {bracket}{low}, {high}]")
    return value


# --- atomic outputs ---------------------------------------------------------


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Yield a temporary sibling directory; swap it in for `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if not np.isfinite(value):
            return None
        return round(value, 6)
    return value


def write_json(path: Path | str, obj: Any) -> None:
    """Deterministic JSON: sorted keys, floats rounded to 6 places, NaN -> null."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n")


def write_csv(df: pd.DataFrame, path: Path | str) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g", lineterminator="\n")


def write_parquet(df: pd.DataFrame, path: Path | str) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def read_parquet(path: Path | str, columns: list[str] | None = None) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise StageError(f"missing input file: {path} (run `dvc repro` to build it)")
    return pd.read_parquet(path, columns=columns)


def run_main(main: Callable[[list[str]], None]) -> None:
    """Run a stage's main(argv); turn a StageError into one line on stderr and exit 1."""
    try:
        main(sys.argv[1:])
    except StageError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
