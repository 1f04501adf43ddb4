"""The one skeleton every stage script runs in: parse arguments, read params, run, and turn a
UserError (or a bad argument) into a single `error:` line with exit status 1, before any work."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from sentiment.config import DatasetConfig, UserError, dataset, load_params


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one `error:` line naming the problem and the usage."""

    def error(self, message: str) -> NoReturn:
        usage = " ".join(self.format_usage().split())
        print(f"error: {message} ({usage})", file=sys.stderr)
        sys.exit(1)


@dataclass(frozen=True)
class Run:
    """What a stage body gets: its arguments, params.yaml, and (for dataset stages) the dataset."""

    args: argparse.Namespace
    params: dict[str, Any]
    key: str | None = None
    dataset: DatasetConfig | None = None

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
