"""params.yaml: parsed once into `Params`, whose typed sections a program reads at its start, before any work.

Each section is a pydantic model kept beside the code that uses it (`TrainConfig` in `sentiment.models.config`,
`EvaluateConfig` in `sentiment.evaluation.evaluate`, …), so changing one section's rules reruns only the stages
that read it (one model registry here would make every stage depend on every section's module). Library functions
take the sections they use; only this module and the stage skeleton (sentiment.stage) hold the parsed mapping.
A bad value is one line naming the param, its value and what was expected, as run_glue validates its arguments
up front.
"""

from __future__ import annotations

import copy
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
    data = _value_at(params, tuple(name.split(".")))
    if data is None:
        raise UserError(f"params.yaml has no section {name!r}")
    return validated(model, data, name)


def validated(model: type[S], data: Any, name: str) -> S:
    """`data` validated as `model`, the section params.yaml calls `name`, or a one-line UserError naming the
    first bad value."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join([name, *(str(p) for p in first["loc"])])
        value = _value_at(data, first["loc"])
        shown = "" if first["type"] == "missing" else f"={value!r}"
        raise UserError(f"invalid param {where}{shown}: {first['msg']}") from None


def _validated_seed(params: dict[str, Any]) -> int:
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


class Params:
    """params.yaml parsed once: its typed sections, each validated on its first read and reused after."""

    def __init__(self, data: dict[str, Any]):
        self._data = data
        self._read: dict[tuple[type, str], Section] = {}
        self.keys_read: set[str] = set()  # the params read so far, as dvc.yaml names them (`export`, `predict.batch_size`)

    @classmethod
    def load(cls, path: Path = PARAMS_FILE) -> Params:
        return cls(load_params(path))

    def with_values(self, values: dict[str, Any]) -> Params:
        """A copy with dotted keys set (`{"train.learning_rate": 1e-4}`), as `dvc exp run -S` sets them; an unknown
        key is a one-line error."""
        data = copy.deepcopy(self._data)
        for dotted, value in values.items():
            *parents, leaf = dotted.split(".")
            node = _value_at(data, tuple(parents))
            if not isinstance(node, dict) or leaf not in node:
                raise UserError(f"unknown param {dotted!r}")
            node[leaf] = value
        return Params(data)

    def __contains__(self, name: str) -> bool:
        return _value_at(self._data, tuple(name.split("."))) is not None

    def section(self, model: type[S], name: str) -> S:
        """`name` (dotted for a nested one) validated as `model`, or a one-line UserError naming the first bad value."""
        if (model, name) not in self._read:
            self._read[model, name] = section(model, self._data, name)
            # a model that ignores unknown keys reads only its fields; one that forbids them, the whole section
            whole = model.model_config.get("extra") == "forbid"
            self.keys_read |= {name} if whole else {f"{name}.{field}" for field in model.model_fields}
        return self._read[model, name]  # type: ignore[return-value]

    @property
    def seed(self) -> int:
        """The top-level `seed` (models and resampling; split has its own)."""
        self.keys_read.add("seed")
        return _validated_seed(self._data)

    @property
    def dataset_keys(self) -> list[str]:
        """The `datasets` keys, in params.yaml's order."""
        return list(self._data.get("datasets") or {})

    def dataset(self, key: str) -> DatasetConfig:
        """The validated `datasets.<key>` section, or a one-line error naming the unknown key."""
        if key not in self.dataset_keys:
            raise UserError(f"unknown dataset key {key!r} (params.yaml datasets: {sorted(self.dataset_keys)})")
        return self.section(DatasetConfig, f"datasets.{key}")
