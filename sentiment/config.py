"""params.yaml: reading it, and validating a section into a typed config before any work starts.

Each section is a pydantic model kept beside the code that uses it (`TrainConfig` in
`sentiment.models.training`, `EvaluateConfig` in `sentiment.evaluation.evaluate`, …), so changing one section's
rules reruns only the stages that read it. `section()` turns pydantic's errors into one line that
names the param, its value and what was expected, as run_glue validates its arguments up front.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML

PARAMS_FILE = Path("params.yaml")


class UserError(Exception):
    """A failure the user can fix (bad input, bad param, missing file): one line, exit status 1."""


class Section(BaseModel):
    """Base of every params section: unknown keys are an error (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


S = TypeVar("S", bound=Section)


def load_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """Read params.yaml as YAML 1.2, as DVC reads and rewrites it (`dvc exp run -S`): a bare `no`
    is the word, not the YAML 1.1 boolean PyYAML would make of it."""
    if not path.exists():
        raise UserError(f"params file not found: {path}")
    with path.open() as f:
        return YAML(typ="safe", pure=True).load(f) or {}


def _value_at(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def section(model: type[S], params: dict[str, Any], name: str) -> S:
    """params[name] validated as `model`, or a one-line UserError naming the first bad value."""
    path = name.split(".")
    data = _value_at(params, tuple(path))
    if data is None:
        raise UserError(f"params.yaml has no section {name!r}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join([name, *(str(p) for p in first["loc"])])
        value = _value_at(data, first["loc"])
        shown = "" if first["type"] == "missing" else f"={value!r}"
        raise UserError(f"invalid param {where}{shown}: {first['msg']}") from None


def validated_seed(params: dict[str, Any]) -> int:
    """params.yaml's top-level `seed` (models and resampling; split has its own), or a one-line UserError."""
    if "seed" not in params:
        raise UserError("params.yaml has no seed")
    value = params["seed"]
    if type(value) is not int or value < 0:
        raise UserError(f"invalid param seed={value!r}: expected a non-negative integer")
    return value


POLARITY_OFF = "labels not declared polarity-ordered (datasets.{key}.polarity)"


class DatasetConfig(Section):
    """One entry of `datasets`: where the data comes from and its label names."""

    source: str
    description: str | None = None  # what the texts are, for the model card ("movie-review sentences")
    language: str | None = None  # the texts' language as an ISO 639-1 code ("en"), for the model card's Hub metadata
    text_column: str
    label_column: str
    id_column: str | None = None
    labels: list[str]
    polarity: bool = False  # labels ordered negative < ... < positive: VADER and the sentiment behaviour tests apply
    split: Literal["holdout", "pooled"] = "pooled"  # holdout: test = the source's test_split; pooled: 70/15/15
    test_split: str | None = None
    train_split: str = "train"

    @model_validator(mode="after")
    def _holdout_names_test(self) -> DatasetConfig:
        if self.split == "holdout" and not self.test_split:
            raise ValueError("split: holdout needs test_split (the source split scored as test)")
        return self

    @field_validator("labels")
    @classmethod
    def _distinct(cls, labels: list[str]) -> list[str]:
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ValueError("expected at least two distinct label names")
        return labels


def dataset(params: dict[str, Any], key: str) -> DatasetConfig:
    """The validated `datasets.<key>` section, or a one-line error naming the unknown key."""
    datasets = params.get("datasets") or {}
    if key not in datasets:
        raise UserError(f"unknown dataset key {key!r} (params.yaml datasets: {sorted(datasets)})")
    return section(DatasetConfig, params, f"datasets.{key}")
