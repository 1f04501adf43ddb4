"""What every generated document shares: markdown tables (pandas `to_markdown`), number formats, the
generated-block markers, params.yaml's datasets, and reading a results or record file that may not exist yet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sentiment.config import load_params

START, END = "<!-- results:start -->", "<!-- results:end -->"


def datasets(root: Path) -> dict[str, dict[str, Any]]:
    """params.yaml's datasets, in its order."""
    return dict(load_params(root / "params.yaml").get("datasets") or {})


def reference(root: Path, key: str) -> dict[str, Any]:
    """params.yaml `report.reference.<key>`: figures the efforts this pipeline replaces published (quoted)."""
    return ((load_params(root / "params.yaml").get("report") or {}).get("reference") or {}).get(key) or {}


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
