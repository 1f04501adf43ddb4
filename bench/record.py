"""The one way a benchmark saves its record: docs/results/<kind>_<name>.json (committed raw results, from
which `python -m sentiment.report` generates the tables in docs/), or one JSON line appended to a log.
The machine a record ran on comes from `sentiment.machine`; the models it measured, from `model_digests`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sentiment.io import model_digest
from sentiment.paths import model_dir

SAVED = Path("docs/results")


def model_digests(models: list[tuple[str, str]]) -> dict[str, str]:
    """A record's `model_digests`: {"<dataset key>/<model>": model_digest(data/<key>/<model>/model)} for each (key, model)
    it measured, so that the generated documents quote it only while those are the current models."""
    return {f"{key}/{model}": model_digest(model_dir(key, model)) for key, model in sorted(models)}


def save(kind: str, name: str, record: dict[str, Any]) -> Path:
    """Write docs/results/<kind>_<name>.json (sorted keys), creating the folder; return the path."""
    SAVED.mkdir(parents=True, exist_ok=True)
    path = SAVED / f"{kind}_{name}.json"
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(f"saved {path}")
    return path


def append(path: Path, record: dict[str, Any]) -> None:
    """Append `record` to `path` as one JSON line (sorted keys), so an interrupted study keeps what it finished."""
    with path.open("a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
