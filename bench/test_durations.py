"""Time the test suite as CI runs it and record where the time goes: `CI=true pytest --durations=0`,
then seconds per module and the slowest tests. Prints the record; asserts nothing.

    python bench/test_durations.py --save NAME [--note "what else ran"] [-- extra pytest arguments]
    python bench/test_durations.py --from LOG --save NAME --note "..."   # a log pytest --durations=0 printed

Durations add up the setup, call and teardown of every test; with `-n 2` two run at once, so their
sum is about twice the wall time.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from record import save
from sentiment.machine import describe, machine

DURATION = re.compile(r"^(\d+\.\d+)s (call|setup|teardown)\s+(\S+)")
SUMMARY = re.compile(r"=* ?(.*?) in (\d+\.\d+)s")


def parse(log: str) -> dict:
    """Per-module seconds, the 15 slowest phases, outcome counts and the wall time from a pytest log."""
    modules: dict[str, float] = defaultdict(float)
    phases = []
    for line in log.splitlines():
        if found := DURATION.match(line):
            seconds, phase, test = float(found.group(1)), found.group(2), found.group(3)
            modules[test.split("::")[0]] += seconds
            phases.append({"seconds": seconds, "phase": phase, "test": test})
    summary = next((m for line in reversed(log.splitlines()) if (m := SUMMARY.search(line)) and "passed" in line), None)
    if summary is None:
        raise SystemExit("error: no pytest summary line in the log")
    outcomes = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", summary.group(1))}
    return {
        "pytest_seconds": float(summary.group(2)),
        "outcomes": outcomes,
        "test_seconds_summed": round(sum(modules.values()), 1),
        "modules": {name: round(s, 1) for name, s in sorted(modules.items(), key=lambda kv: -kv[1])},
        "slowest": sorted(phases, key=lambda p: -p["seconds"])[:15],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", metavar="NAME", required=True, help="write docs/results/pytest_NAME.json")
    parser.add_argument("--from", dest="log", type=Path, help="read this log instead of running pytest")
    parser.add_argument("--note", default="", help="what else ran, what differed")
    parser.add_argument("pytest_args", nargs="*", help="after --: extra pytest arguments")
    args = parser.parse_args()
    command = ["pytest", "--durations=0", "-p", "no:cacheprovider", *args.pytest_args]
    if args.log:
        log, wall = args.log.read_text(), None
    else:
        start = time.perf_counter()
        done = subprocess.run(command, env={**os.environ, "CI": "true"}, capture_output=True, text=True)
        log, wall = done.stdout + done.stderr, time.perf_counter() - start
    record = {"machine": machine(), "command": "CI=true " + " ".join(command), "note": args.note, **parse(log)}
    if wall is not None:
        record["wall_seconds"] = round(wall, 1)
    print(describe(record["machine"]))
    print(f"pytest {record['pytest_seconds']:.0f} s, {record['outcomes']}; per module:")
    for name, seconds in list(record["modules"].items())[:10]:
        print(f"  {seconds:7.1f} s  {name}")
    save("pytest", args.save, record)
    sys.exit(0)


if __name__ == "__main__":
    main()
