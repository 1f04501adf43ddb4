"""The CPU at hand: its model name, core count, clock and the instruction sets that decide speed here,
read from /proc/cpuinfo in this one place (empty or "unknown" where there is none)."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")  # what decides CPU speed here
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # bf16 autocast pays off on a CPU with either
CPUINFO = Path("/proc/cpuinfo")


@cache
def cpuinfo() -> str:
    """/proc/cpuinfo's text (empty where there is none)."""
    try:
        return CPUINFO.read_text()
    except OSError:
        return ""


def _field(name: str) -> str | None:
    """The first core's value of a /proc/cpuinfo field."""
    return next((line.split(":", 1)[1].strip() for line in cpuinfo().splitlines() if line.startswith(name)), None)


def cpu_flags() -> list[str]:
    """Which of CPU_FLAGS this CPU has, in CPU_FLAGS' order."""
    present = set(cpuinfo().split())
    return [flag for flag in CPU_FLAGS if flag in present]


def cpu_supports_bf16() -> bool:
    """AMX-BF16 or AVX512-BF16: bf16 autocast is faster than fp32 on this CPU."""
    return any(flag in BF16_FLAGS for flag in cpu_flags())


def cpu_model() -> str:
    return _field("model name") or "unknown CPU"


def clock_ghz() -> float:
    """The first core's current clock in GHz (NaN where unknown)."""
    mhz = _field("cpu MHz")
    return float(mhz) / 1000 if mhz else float("nan")


def machine() -> dict[str, Any]:
    """CPU model, core count and CPU flags: what a speed measurement is recorded with."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "cpu_flags": cpu_flags()}


def describe(m: dict[str, Any]) -> str:
    """One line: 'Intel(R) Xeon(R) Processor, 2 cores, flags: avx2 avx512_vnni amx_bf16'."""
    return f"{m['cpu']}, {m['cores']} cores, flags: {' '.join(m['cpu_flags']) or 'none of ' + ' '.join(CPU_FLAGS)}"


def machine_key() -> str:
    """One line naming the CPU for caches of timings: model, cores and flags."""
    m = machine()
    return f"{m['cpu']}|{m['cores']} cores|{' '.join(m['cpu_flags']) or 'no listed flags'}"
