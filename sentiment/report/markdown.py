"""What every generated document shares: markdown tables (pandas `to_markdown`), number formats, the
generated-block markers, params.yaml's datasets, reading a results or record file that may not exist yet, and
the bench records of the current models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sentiment.config import DatasetConfig, Params, Section, UserError
from sentiment.io import model_digest
from sentiment.paths import model_dir, results_file

START, END = "<!-- results:start -->", "<!-- results:end -->"
RECORDS = Path("docs") / "results"
NO_CURRENT_RECORD = "no speed record of the current models"


class Quoted(Section):
    """params.yaml `report.reference.<key>`: what the effort this pipeline replaces published, quoted as written."""

    published: dict[str, str] = {}  # figure name -> the published value
    slices: str | None = None  # a sentence quoted under the slices table
    ablations: str | None = None  # a sentence quoted under the ablations table


class ReportConfig(Section):
    """params.yaml `report`."""

    reference: dict[str, Quoted]


def datasets(root: Path) -> dict[str, DatasetConfig]:
    """params.yaml's datasets, in its order."""
    params = Params.load(root / "params.yaml")
    return {key: params.dataset(key) for key in params.dataset_keys}


def reference(root: Path, key: str) -> Quoted:
    """params.yaml `report.reference.<key>` (nothing quoted for a dataset it does not name)."""
    return Params.load(root / "params.yaml").section(ReportConfig, "report").reference.get(key) or Quoted()


def table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> list[str]:
    """A markdown table, one line per row; cells are written as given (already formatted strings)."""
    import pandas as pd

    frame = pd.DataFrame(rows, columns=columns).fillna("—")
    return frame.to_markdown(index=False, disable_numparse=True).splitlines()


def load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def delta(value: float | None) -> str:
    return "—" if value is None else f"{value:+.4f}"


def p_value(p: float) -> str:
    return "< 1e-6" if p < 1e-6 else f"= {p:.3g}"


def with_ci(figures: dict[str, Any], name: str) -> str:
    low, high = figures.get("ci95", {}).get(name, [None, None])
    return f"{fmt(figures[name])} [{fmt(low)}, {fmt(high)}]"


def interval(low_high: list[float]) -> str:
    return f"[{low_high[0]:.4f}, {low_high[1]:.4f}]"


def replace_block(text: str, block: str, name: str) -> str:
    """`text` with what lies between START and END (markers included) replaced by `block`."""
    if START not in text or END not in text:
        raise SystemExit(f"{name} lacks the markers {START} … {END}")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + block + tail


def current_digest(root: Path, key: str, model: str) -> str | None:
    """The digest of dataset `key`'s `model` as it stands: `model_digest` of data/<key>/<model>/model when its
    weights are there, else the `digest` its training stage wrote to results/<key>/<model>.json; None if neither."""
    folder = root / model_dir(key, model)
    if folder.is_dir():
        try:
            return model_digest(folder)
        except UserError:  # a folder without weights: fall back on the committed figure
            pass
    digest = (load(root / results_file(key, model)) or {}).get("digest")
    return digest if isinstance(digest, str) and digest else None


def measured_current_models(record: dict[str, Any], digests: dict[str, str | None], root: Path) -> bool:
    """Whether a bench record measured the current models: its `model_digests` ({"<key>/<model>": digest}) names at
    least one and every digest equals that model's `current_digest`. Records without `model_digests` never match.
    `digests` caches the current digests by "<key>/<model>"."""
    models = record.get("model_digests")
    if not isinstance(models, dict) or not models:
        return False
    for name, digest in models.items():
        key, _, model = str(name).partition("/")
        if not key or not model or "/" in model:
            return False
        if name not in digests:
            digests[name] = current_digest(root, key, model)
        if digests[name] is None or digest != digests[name]:
            return False
    return True


def current_records(root: Path, kind: str, dataset: str | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """The bench records docs/results/<kind>_*.json (of `dataset`, when given) that measured the current models,
    in name order (dated names: newest last)."""
    digests: dict[str, str | None] = {}
    found = []
    for path in sorted((root / RECORDS).glob(f"{kind}_*.json")):
        record = json.loads(path.read_text())
        if (dataset is None or record.get("dataset") == dataset) and measured_current_models(record, digests, root):
            found.append((path, record))
    return found
