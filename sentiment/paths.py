"""Where every stage reads and writes: one scheme, the same one dvc.yaml declares.

data/<key>/<stage>/        a stage's cached outputs (models, predictions)
results/<key>/<stage>.json a stage's full figures (committed; what the report and cards read)
metrics/<key>/<stage>.json a stage's headline figures, flat (committed; DVC's metrics)
plots/<key>/<stage>/       a stage's plot data and figures (committed)
"""

from __future__ import annotations

from pathlib import Path

SOURCES = Path("data") / "sources"  # local dataset files, one folder per dataset
CHECKPOINTS = Path("checkpoints")  # Trainer checkpoints while a fine-tune runs (not an output)
LIVE = Path("dvclive")  # dvclive's live training metrics, <key>/ per fine-tune (not committed: they carry timestamps)


def source_dir(key: str) -> Path:
    """Where dataset `key`'s local source files live: split@<key>'s dep, so a file here reruns only that split."""
    return SOURCES / key


def data_dir(key: str, stage: str) -> Path:
    return Path("data") / key / stage


def metrics_file(key: str, stage: str) -> Path:
    """A stage's headline figures: a flat file DVC shows (`dvc metrics show`, `dvc exp show`)."""
    return Path("metrics") / key / f"{stage}.json"


def results_file(key: str, stage: str) -> Path:
    """A stage's full figures (every model, split, slice and form)."""
    return Path("results") / key / f"{stage}.json"


def plots_dir(key: str, stage: str) -> Path:
    return Path("plots") / key / stage


MODELS = ("finetune", "distill")  # the served models, each named by the stage that trains it; finetune is the teacher


SPLITS = ("train", "dev", "test")
HELD_OUT = SPLITS[1:]  # the splits models are scored on (dev picks, test reports)

# the model that is charted, compared (McNemar) with the best baseline, exported, served and described by the
# cards: the fine-tuned encoder, the only model with a head to export and a training run to describe
PRIMARY = "finetune"


def model_dir(key: str, model: str = "finetune") -> Path:
    """A trained model's lean inference directory (the fine-tuned model, or its distilled student)."""
    return data_dir(key, model) / "model"


def export_stage(model: str) -> str:
    """The stage that exports a model's forms: export for the fine-tuned model, export_<model> for another."""
    return "export" if model == "finetune" else f"export_{model}"


def ablation_cell_dir(key: str, cell: str) -> Path:
    return data_dir(key, "ablations") / cell


def report_dir(key: str) -> Path:
    """The generated model cards."""
    return Path("reports") / key
