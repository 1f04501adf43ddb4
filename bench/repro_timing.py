"""Time `dvc repro` per stage, then check that a no-op rerun is fast and that an evaluate-only
param change reruns only evaluate and what reads its outputs. Prints the figures; asserts nothing.

    python bench/repro_timing.py                      # dvc repro, timed per stage
    python bench/repro_timing.py export@sst2          # only those targets and what they need
    python bench/repro_timing.py --checks             # then the no-op and evaluate-param checks
    python bench/repro_timing.py --checks-only        # only the checks (the pipeline already ran)
    python bench/repro_timing.py --save NAME --note "what else ran"   # also keep it as docs/results/repro_NAME.json
    python bench/repro_timing.py --from bench/results/repro_timing.json --save NAME   # keep an earlier run

`--save` records the machine (CPU model, cores) beside the timings; docs/experiments.md is generated
from those files by `python -m sentiment.report`.

A stage's time runs from DVC's "Running stage" line to the next stage's (so it includes DVC's
own hashing and lock update). Timings are written to bench/results/, never to metrics/.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from ruamel.yaml import YAML

from record import save
from sentiment.machine import machine

RESULTS = Path("bench/results")


def timed_repro(extra: list[str] | None = None, echo: bool = True) -> tuple[float, list[tuple[str, float]]]:
    """Run `dvc repro`, echoing its output; return (wall seconds, [(stage, seconds)] in run order)."""
    start = time.perf_counter()
    marks: list[tuple[str, float]] = []
    proc = subprocess.Popen(["dvc", "repro", *(extra or [])], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if echo:
            sys.stdout.write(line)
            sys.stdout.flush()
        found = re.search(r"Running stage '([^']+)'", line)
        if found:
            marks.append((found.group(1), time.perf_counter()))
    if proc.wait() != 0:
        raise SystemExit(f"dvc repro failed (exit {proc.returncode})")
    end = time.perf_counter()
    stages = [(name, (marks[i + 1][1] if i + 1 < len(marks) else end) - t) for i, (name, t) in enumerate(marks)]
    return end - start, stages


def set_param(path: Path, dotted: str, value) -> object:
    """Set a params.yaml value in place (comments kept); return the old value."""
    yaml = YAML()
    data = yaml.load(path)
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        node = node[key]
    old = node[leaf]
    node[leaf] = value
    yaml.dump(data, path)
    return old


def checks() -> dict:
    wall, stages = timed_repro(echo=False)
    print(f"no-op dvc repro: {wall:.1f} s, stages rerun: {[s for s, _ in stages] or 'none'}")
    params = Path("params.yaml")
    original = params.read_text()
    try:
        old = set_param(params, "evaluate.ece_bins", 10)
        change_wall, changed = timed_repro(echo=False)
    finally:
        params.write_text(original)
    print(f"evaluate.ece_bins {old} -> 10: {change_wall:.1f} s, stages rerun: {sorted(s for s, _ in changed)}")
    restore_wall, restored = timed_repro(echo=False)
    print(f"restored params: {restore_wall:.1f} s, stages rerun: {sorted(s for s, _ in restored)}")
    return {
        "noop_seconds": round(wall, 2),
        "noop_stages_rerun": [s for s, _ in stages],
        "evaluate_param_change_stages_rerun": sorted(s for s, _ in changed),
        "evaluate_param_change_seconds": round(change_wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help="dvc repro targets (default: the whole pipeline)")
    parser.add_argument("--checks", action="store_true", help="after the timed run, the no-op and evaluate-param checks")
    parser.add_argument("--checks-only", action="store_true", help="only the checks")
    parser.add_argument("--save", metavar="NAME", help="also write docs/results/repro_NAME.json (committed)")
    parser.add_argument("--note", default="", help="with --save: what else ran on the machine, or what changed")
    parser.add_argument("--from", dest="source", type=Path, help="with --save: keep this earlier raw result instead of running")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.source:
        keep(json.loads(args.source.read_text()), args.save, args.note)
        return
    report: dict = {}
    if not args.checks_only:
        wall, stages = timed_repro(args.targets)
        print("\n| stage | seconds |\n| --- | --- |")
        for name, seconds in stages:
            print(f"| {name} | {seconds:.0f} |")
        print(f"| total (dvc repro wall time) | {wall:.0f} |")
        report["repro"] = {"wall_seconds": round(wall, 1), "stages": {n: round(s, 1) for n, s in stages}}
        if args.targets:
            report["repro"]["targets"] = args.targets
    if args.checks or args.checks_only:
        report["checks"] = checks()
    out = RESULTS / ("repro_checks.json" if args.checks_only else "repro_timing.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    if args.save:
        keep(report, args.save, args.note)


def keep(report: dict, name: str | None, note: str) -> None:
    if not name:
        raise SystemExit("--from needs --save NAME")
    save("repro", name, {"machine": report.get("machine") or machine(), "note": note, **report})


if __name__ == "__main__":
    main()
