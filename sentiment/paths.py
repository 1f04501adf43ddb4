"""Where every stage reads and writes: one scheme, the same one dvc.yaml declares.

data/<key>/<stage>/        a stage's cached outputs (models, predictions)
metrics/<key>/<stage>.json a stage's metrics (committed)
plots/<key>/<stage>/       a stage's plot data and figures (committed)
"""

from __future__ import annotations

from pathlib import Path

SOURCES = Path("data") / "sources"  # local dataset files; a dep of every split stage
CHECKPOINTS = Path("checkpoints")  # Trainer checkpoints while a fine-tune runs (not an output)
LIVE = Path("dvclive")  # dvclive's live training metrics, <key>/ per fine-tune (not committed: they carry timestamps)


def data_dir(key: str, stage: str) -> Path:
    return Path("data") / key / stage


def metrics_file(key: str, stage: str) -> Path:
    return Path("metrics") / key / f"{stage}.json"


def plots_dir(key: str, stage: str) -> Path:
    return Path("plots") / key / stage


def model_dir(key: str) -> Path:
    """The fine-tuned model's lean inference directory."""
    return data_dir(key, "finetune") / "model"


def ablation_cell_dir(key: str, cell: str) -> Path:
    return data_dir(key, "ablations") / cell


def report_dir(key: str) -> Path:
    """The generated model cards."""
    return Path("reports") / key
