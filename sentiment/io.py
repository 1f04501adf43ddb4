"""Writing outputs: atomically (a failed stage leaves no half-written file), deterministically
(sorted keys, rounded floats, no timestamps), so a forced rerun is byte-identical."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sentiment.config import UserError
from sentiment.paths import metrics_file, model_dir, results_file

# the keys a stage's headline file may hold: one small vocabulary across stages keeps `dvc metrics show`
# (one column per distinct key) and `dvc exp show` narrow
HEADLINE_KEYS = (
    "rows",  # rows kept (split, clean)
    "dropped",  # rows dropped (split, clean)
    "flagged",  # train rows flagged as likely mislabelled (label_issues)
    "auroc",  # how the label-quality score ranks class-conditional noise planted on train's plantable rows (label_issues)
    "auroc_uniform",  # the same for uniform flips planted on train (label_issues)
    # of the plantable rows scored lowest, as many as were planted (class-conditional), the share planted (label_issues)
    "precision_at_budget",
    "accuracy",  # test accuracy of the stage's model (baseline, finetune, evaluate, ablations)
    "f1_macro",
    "ece",  # test ECE after temperature scaling (evaluate)
    "min_accuracy",  # the weakest slice (slices) or external set (external)
    "comprehensiveness",  # the most faithful attribution method's (attention)
    "agreement",  # the lowest test-label agreement with torch among the forms passing the gate (export)
    "failure_rate",  # behavioural tests, mean over tests (behavior)
)


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
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
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


def write_results(key: str, stage: str, details: dict[str, Any], headline: dict[str, float | int | None]) -> None:
    """A stage's full figures to `results_file` and its flat headline figures to `metrics_file`; neither file
    is replaced unless both are written."""
    unknown = sorted(set(headline) - set(HEADLINE_KEYS))
    if unknown:
        raise ValueError(f"headline keys {unknown} of {stage}@{key} are not in sentiment.io.HEADLINE_KEYS")
    if any(not isinstance(v, (int, float, np.number)) or isinstance(v, bool) for v in headline.values() if v is not None):
        raise ValueError(f"headline figures of {stage}@{key} must be numbers: {headline}")
    with atomic_path(results_file(key, stage)) as details_tmp, atomic_path(metrics_file(key, stage)) as headline_tmp:
        details_tmp.write_text(json.dumps(_jsonable(details), indent=2, sort_keys=True) + "\n")
        headline_tmp.write_text(json.dumps(_jsonable(headline), indent=2, sort_keys=True) + "\n")


def read_results(key: str, stage: str) -> dict[str, Any]:
    """A stage's full figures (`results_file`), or a one-line error naming the stage to run."""
    return read_json(results_file(key, stage), f"{stage}@{key}")


def write_csv(df: pd.DataFrame, path: Path | str) -> None:
    """CSV with 6 significant digits and \\n line ends (the format of every committed table)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g", lineterminator="\n")


def write_parquet(df: pd.DataFrame, path: Path | str) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def noted_read(path: Path | str) -> None:
    """Announce a read that native code makes (pyarrow, safetensors, ONNX Runtime, OpenVINO), which Python's own
    `open` audit event does not see, to a read trace (sentiment.stage.ReadTrace); nothing happens without one."""
    sys.audit("sentiment.read", str(path))


def read_parquet(path: Path | str, columns: list[str] | None = None) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise UserError(f"missing input file: {path} (run `dvc repro` to build it)")
    noted_read(path)
    return pd.read_parquet(path, columns=columns)


def read_json(path: Path | str, stage_hint: str = "") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise UserError(f"missing input file: {path} (run `dvc repro{' ' + stage_hint if stage_hint else ''}`)")
    return json.loads(path.read_text())


def trained_model(key: str, model: str = "finetune") -> Path:
    """A dataset's trained model folder (sentiment.paths.MODELS), or a one-line error naming the stage to run."""
    path = model_dir(key, model)
    if not (path / "head.json").exists():
        raise UserError(f"no trained model {model!r} for {key!r} at {path}: run `dvc repro {model}@{key}` first")
    return path


def model_facts(key: str, model: str = "finetune") -> dict[str, Any]:
    """The model folder's head.json: what serving knows of a model (labels, max_length, which model, its dev
    temperature, test figures, weights digest), written by the stage that trained it."""
    path = trained_model(key, model) / "head.json"
    facts = json.loads(path.read_text())
    if "temperature" not in facts:
        raise UserError(f"{path} has no temperature (written by an older version): rerun `dvc repro {model}@{key}`")
    return facts


WEIGHT_SUFFIXES = (".safetensors", ".onnx", ".xml", ".bin")  # the files whose bytes make a model


def model_digest(folder: Path | str) -> str:
    """The first 16 hex digits of a sha256 over a model folder's weight files (names and bytes, sorted by
    path): what a bench record names as the model it measured, and what a reader matches it against."""
    import hashlib

    folder, digest = Path(folder), hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise UserError(f"no model weights under {folder}")
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def save_figure(fig: Any, path: Path | str, dpi: int = 110) -> None:
    """Save a matplotlib figure without the Software/date metadata (byte-identical reruns), then close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
