"""The timings `--form auto` picks a form by, kept between runs in one JSON file outside the pipeline
(`$XDG_CACHE_HOME/sentiment/auto_timings.json`). An entry names everything a timing depends on: the model and
its export, the spin mode, the CPUs this process may use, the runtime versions and the machine.

Nothing about the file can stop a run: an unreadable or half-written file is timed again (one notice line on
stderr), a cache folder that cannot be written keeps the timings in memory for the process (one notice line),
and a write is atomic. The newest MAX_ENTRIES entries are kept."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from sentiment.io import atomic_path
from sentiment.machine import machine_key

MAX_ENTRIES = 32
FORMAT = 1  # the file's layout: {"format": 1, "entries": {entry: {"order": n, "seconds": {form: s}}}}
RUNTIMES = {"torch": ("torch",), "onnxruntime": ("onnxruntime", "onnxruntime-gpu"), "openvino": ("openvino",)}
CGROUP = Path("/sys/fs/cgroup")
in_memory: dict[tuple[Path, str], dict[str, float]] = {}  # what this process measured or read, by (file, entry)


def timings_cache_path() -> Path:
    """$XDG_CACHE_HOME (else ~/.cache) / sentiment / auto_timings.json."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "sentiment" / "auto_timings.json"


def notice(message: str) -> None:
    print(f"notice: {message}", file=sys.stderr)


def cgroup_cpu_quota() -> float | None:
    """The CPUs this process's cgroup may use (cgroup v2 `cpu.max`, else v1 `cpu.cfs_quota_us`), None without a quota."""
    root = CGROUP
    try:
        own = next(line[3:].strip() for line in Path("/proc/self/cgroup").read_text().splitlines() if line.startswith("0::"))
    except (OSError, StopIteration):
        own = "/"
    for folder in dict.fromkeys((root / own.lstrip("/"), root)):
        try:
            quota, period = (folder / "cpu.max").read_text().split()[:2]
        except (OSError, ValueError):
            continue
        return None if quota == "max" else int(quota) / int(period)
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 else None


def usable_cores() -> str:
    """The CPUs this process may run on (its affinity), and the cgroup quota where there is one: '2' or '4 quota 1.5'."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return f"{cores}" if quota is None else f"{cores} quota {quota:g}"


def runtime_versions() -> str:
    """'onnxruntime 1.22.0, openvino 2025.2.0, torch 2.7.1': the installed runtimes a form can run on."""
    found = []
    for name, distributions in RUNTIMES.items():
        for distribution in distributions:
            try:
                found.append(f"{name} {metadata.version(distribution)}")
                break
            except metadata.PackageNotFoundError:
                continue
    return ", ".join(found) or "no runtime"


def cache_entry(key: str, model: str, export_digest: str, spin: bool) -> str:
    """The cache key of one dataset's model and export on this machine, as this process would run it."""
    spinning = "spin" if spin else "no spin"
    return " | ".join((key, model, export_digest, spinning, f"cores {usable_cores()}", runtime_versions(), machine_key()))


def valid_entries(cached: Any) -> dict[str, dict[str, Any]]:
    """The entries of a parsed cache file; ValueError when its layout is not FORMAT's."""
    if not isinstance(cached, dict) or cached.get("format") != FORMAT or not isinstance(cached.get("entries"), dict):
        raise ValueError(f"not a format-{FORMAT} timing cache")
    for entry in cached["entries"].values():
        seconds = entry.get("seconds") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or type(entry.get("order")) is not int or not isinstance(seconds, dict):
            raise ValueError("an entry has no order or seconds")
        if not all(isinstance(s, (int, float)) and math.isfinite(s) and s >= 0 for s in seconds.values()):
            raise ValueError("an entry has a timing that is not a number of seconds")
    return cached["entries"]


def read_entries(path: Path, quiet: bool = False) -> dict[str, dict[str, Any]]:
    """The cache's entries; none when the file is missing, and none with a notice when it cannot be read."""
    try:
        return valid_entries(json.loads(path.read_text(encoding="utf-8")))
    except (FileNotFoundError, NotADirectoryError):  # no cache yet, or no folder it could be in
        return {}
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        if not quiet:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0][:120]
            notice(f"the timing cache {path} cannot be read ({reason}): timing again")
        return {}


def write_entry(path: Path, entry: str, seconds: dict[str, float]) -> None:
    """Add or replace `entry` in the cache (re-read just before, so other runs' entries are kept), keep the newest
    MAX_ENTRIES, and replace the file atomically; a failed write is a notice, not an error."""
    entries = read_entries(path, quiet=True)
    order = max((e["order"] for e in entries.values()), default=0) + 1
    entries[entry] = {"order": order, "seconds": dict(sorted(seconds.items()))}
    newest = sorted(entries, key=lambda name: entries[name]["order"])[-MAX_ENTRIES:]
    text = json.dumps({"format": FORMAT, "entries": {name: entries[name] for name in newest}}, indent=1, sort_keys=True)
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(text + "\n", encoding="utf-8")
    except OSError as err:
        notice(f"cannot write the timing cache {path} ({err.strerror or err}): the timings are kept in memory for this run")


def cached_timings(entry: str, forms: list[str], measure: Callable[[str], float], path: Path | None = None) -> dict[str, float]:
    """Seconds per form for `entry`: those this process or the cache file already has, the others measured with
    `measure(form)` and then stored. In the order of `forms`."""
    path = path or timings_cache_path()
    known = in_memory.setdefault((path, entry), {})
    if any(form not in known for form in forms):
        stored = read_entries(path).get(entry)
        for form, seconds in (stored["seconds"] if stored else {}).items():
            known.setdefault(form, float(seconds))
    missing = [form for form in forms if form not in known]
    for form in missing:
        known[form] = float(measure(form))
    if missing:
        write_entry(path, entry, known)
    return {form: known[form] for form in forms}
