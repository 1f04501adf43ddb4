"""A throwaway PostgreSQL server for tests: Debian's binaries, initdb into a temporary directory,
listening only on a Unix socket there, stopped and removed at the end."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def binaries() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin that has initdb (Debian's layout), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


@contextmanager
def server(database: str = "optuna") -> Iterator[str]:
    """Start a server and yield a SQLAlchemy URL (psycopg 3) of an empty `database` on it."""
    bin_dir = binaries()
    assert bin_dir is not None, "PostgreSQL is not installed (Debian: apt-get install postgresql)"
    root = Path(tempfile.mkdtemp(prefix="pg-"))  # short: a Unix socket path has a length limit
    as_owner: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        shutil.chown(root, "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    data = root / "data"
    run = lambda *cmd: subprocess.run([*as_owner, *cmd], check=True, capture_output=True, text=True)  # noqa: E731
    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "sentiment", "--auth=trust", "--no-sync")
        options = f"-c listen_addresses='' -k {root} -c fsync=off"
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start")
        run(str(bin_dir / "createdb"), "-h", str(root), "-U", "sentiment", database)
        yield f"postgresql+psycopg://sentiment@/{database}?host={root}"
    finally:
        if (data / "postmaster.pid").exists():
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)
