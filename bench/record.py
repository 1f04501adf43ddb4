"""The one way a benchmark saves its record: docs/results/<kind>_<name>.json (committed raw results, from
which `python -m sentiment.report` generates the tables in docs/), or one JSON line appended to a log.
The machine a record ran on comes from `sentiment.machine`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SAVED = Path("docs/results")


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
