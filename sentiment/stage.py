"""The one skeleton every stage script runs in: parse arguments, read params, run, and turn a
UserError (or a bad argument) into a single `error:` line with exit status 1, before any work."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from sentiment.config import DatasetConfig, Section, UserError, dataset, load_params, section, validated_seed

S = TypeVar("S", bound=Section)

DVC_YAML = Path(__file__).resolve().parent.parent / "dvc.yaml"  # the pipeline beside this code
EVERY_DATASET = "${datasets}"  # the `foreach` of a stage that runs once per dataset
RESULTS_OUT = re.compile(r"^results/\$\{\w+\}/(\w+)\.json$")


def pipeline_stages(dvc_yaml: Path = DVC_YAML) -> dict[str, Any]:
    """dvc.yaml's stages in pipeline order (the one list of stage names), each its definition as written."""
    from ruamel.yaml import YAML

    return dict(YAML(typ="safe", pure=True).load(dvc_yaml.read_text())["stages"])


def dataset_stages(dvc_yaml: Path = DVC_YAML) -> list[str]:
    """The stages that run once for every dataset (`foreach: ${datasets}`), in pipeline order."""
    return [name for name, stage in pipeline_stages(dvc_yaml).items() if stage.get("foreach") == EVERY_DATASET]


def stage_results(dvc_yaml: Path = DVC_YAML) -> list[tuple[str, bool]]:
    """(name, written for every dataset) of each results/<key>/<name>.json a stage declares, in pipeline order;
    the others (ablations, external) exist only for the datasets their params list."""
    found = []
    for stage in pipeline_stages(dvc_yaml).values():
        body = stage.get("do", stage)
        for out in body.get("outs", []):
            path = next(iter(out)) if isinstance(out, dict) else out
            if match := RESULTS_OUT.match(path):
                found.append((match.group(1), stage.get("foreach") == EVERY_DATASET))
    return found


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one `error:` line naming the problem and the usage."""

    def error(self, message: str) -> NoReturn:
        usage = " ".join(self.format_usage().split())
        print(f"error: {message} ({usage})", file=sys.stderr)
        sys.exit(1)


@dataclass(frozen=True)
class Run:
    """What a stage body gets: its arguments, params.yaml, and (for dataset stages) the dataset.

    A stage reads params through `section()` and `seed`, each validated once per run, never as raw dicts.
    """

    args: argparse.Namespace
    params: dict[str, Any]
    key: str | None = None
    dataset: DatasetConfig | None = None
    _sections: dict[str, Section] = field(default_factory=dict, repr=False, compare=False)

    def section(self, model: type[S], name: str) -> S:
        """params.yaml's `name` validated as `model` (the first call validates; later calls reuse it)."""
        if name not in self._sections:
            self._sections[name] = section(model, self.params, name)
        cached = self._sections[name]
        assert isinstance(cached, model), f"section {name!r} read as {type(cached).__name__} and {model.__name__}"
        return cached

    @property
    def seed(self) -> int:
        """The validated top-level `seed`."""
        return validated_seed(self.params)

    @property
    def labels(self) -> list[str]:
        assert self.dataset is not None
        return self.dataset.labels


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def run_stage(
    body: Callable[[Run], None],
    doc: str | None,
    *,
    dataset_key: bool = True,
    arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    argv: list[str] | None = None,
) -> None:
    """Run `body` as a stage: `python -m stages.<name> <dataset key> [options]`."""
    lines = (doc or "").strip().splitlines()
    parser = OneLineParser(description=lines[0] if lines else None)
    if dataset_key:
        parser.add_argument("key", help="dataset key from params.yaml")
    if arguments:
        arguments(parser)
    args = parser.parse_args(argv)
    try:
        params = load_params()
        key = getattr(args, "key", None)
        body(Run(args, params, key, dataset(params, key) if dataset_key else None))
    except UserError as err:
        fail(str(err))
