"""The one skeleton every stage script runs in: parse arguments, read params, run, and turn a
UserError (or a bad argument) into a single `error:` line with exit status 1, before any work."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from sentiment.config import DatasetConfig, Params, Section, UserError

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
    """What a stage body gets: its arguments, params.yaml parsed (`params`), and (for dataset stages) the dataset.
    A stage reads the typed sections it passes to the library at its start, so a bad value fails before any work."""

    args: argparse.Namespace
    params: Params
    key: str | None = None
    dataset: DatasetConfig | None = None

    def section(self, model: type[S], name: str) -> S:
        """params.yaml's `name` validated as `model` (once per run)."""
        return self.params.section(model, name)

    @property
    def seed(self) -> int:
        """The validated top-level `seed`."""
        return self.params.seed

    @property
    def labels(self) -> list[str]:
        assert self.dataset is not None
        return self.dataset.labels


TRACE_READS = "SENTIMENT_TRACE_READS"  # a folder: each stage run writes there what it read (the deps-exactness test)


class ReadTrace:
    """The repository files a stage process opens for reading or lists, relative to the working directory: Python's
    audit events (every `open` through Python: pandas' CSVs, json, transformers' configs) and the reads native code
    makes, which sentiment.io.noted_read announces."""

    def __init__(self) -> None:
        self.root, self.paths = Path.cwd(), set()
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple) -> None:
        if event == "open":
            path, mode, _ = args
            # os.open (mode None) is left out: shutil.rmtree opens names relative to a directory descriptor
            if mode is None or any(c in mode for c in "wax+"):
                return
        elif event in ("os.listdir", "os.scandir", "sentiment.read"):
            path = args[0]
        else:
            return
        if isinstance(path, (str, os.PathLike)):
            resolved = Path(os.path.abspath(path))
            if resolved.is_relative_to(self.root):
                self.paths.add(resolved.relative_to(self.root).as_posix())

    def write(self, folder: Path, params: Params) -> None:
        """One JSON file per run: its command line (as dvc.lock writes it), the files read and the params read."""
        import hashlib
        import json

        command = " ".join(["python", *sys.orig_argv[1:]])
        record = {"cmd": command, "files": sorted(self.paths), "params": sorted(params.keys_read)}
        folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(command.encode()).hexdigest()[:16]
        (folder / f"{name}.json").write_text(json.dumps(record, indent=1))


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
        trace = ReadTrace() if os.environ.get(TRACE_READS) else None
        params = Params.load()
        key = getattr(args, "key", None)
        body(Run(args, params, key, params.dataset(key) if dataset_key else None))
        if trace:
            trace.write(Path(os.environ[TRACE_READS]), params)
    except UserError as err:
        fail(str(err))
