"""What every benchmark record starts from: the machine it ran on (CPU model, cores, the instruction sets
that decide speed here) and one way to save a record under docs/results/ (committed raw results, from
which `python -m sentiment.report` generates the tables in docs/)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SAVED = Path("docs/results")
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def machine() -> dict[str, Any]:
    """CPU model, core count and which of FLAGS the CPU has (read from /proc/cpuinfo)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "unknown CPU")
    present = set(info.split())
    return {"cpu": model, "cores": os.cpu_count(), "cpu_flags": [f for f in FLAGS if f in present]}


def describe(m: dict[str, Any]) -> str:
    """One line: 'Intel(R) Xeon(R) Processor, 2 cores, avx2 avx512_vnni amx_bf16'."""
    return f"{m['cpu']}, {m['cores']} cores, flags: {' '.join(m['cpu_flags']) or 'none of ' + ' '.join(FLAGS)}"


def save(kind: str, name: str, record: dict[str, Any]) -> Path:
    """Write docs/results/<kind>_<name>.json (sorted keys), creating the folder; return the path."""
    SAVED.mkdir(parents=True, exist_ok=True)
    path = SAVED / f"{kind}_{name}.json"
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(f"saved {path}")
    return path
