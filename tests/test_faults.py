"""Faults survived with nothing lost (`pytest -m faults`, a CI step of its own): `sentiment predict` and a DVC
stage killed mid-write leave no partial output and the next `dvc repro` reruns only the killed stage; a full
disk is one line with nothing half-written; a corrupt, half-written or unwritable timing cache never stops a
run; a server under a minute of load with a tenth of its requests malformed answers no 500, keeps its memory
and gives every valid request the answer `sentiment predict` gives offline.

The timing cache's own rules (its key, pruning, reuse) are unit tests here too, outside the `faults` mark."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import CI, REPO
from sentiment.serving import timing_cache
from sentiment.serving.timing_cache import cache_entry, cached_timings

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
ENV = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}", "PYTHONWARNINGS": "ignore"}
LOAD_SECONDS = 60 if CI else int(os.environ.get("SENTIMENT_FAULT_LOAD_SECONDS", "10"))
faults = pytest.mark.faults


@pytest.fixture
def checkout(saved_model):
    """The tiny saved model (dataset `toy`) with the repository's params.yaml beside it."""
    params = {**PARAMS, "datasets": {"toy": {**PARAMS["datasets"]["sst2"], "labels": ["negative", "positive"]}}}
    (saved_model / "params.yaml").write_text(yaml.safe_dump(params))
    return saved_model


def reviews(n: int, words: int = 12) -> list[str]:
    vocabulary = ["good", "bad", "film", "plot", "lovely", "dull", "acting", "the", "was", "really"]
    return [" ".join(vocabulary[(i * 7 + j * 3) % len(vocabulary)] for j in range(words)) + f" {i}" for i in range(n)]


def siblings(path: Path) -> list[str]:
    """Files beside `path` named after it (the output itself, or a temporary sibling of it)."""
    return sorted(p.name for p in path.parent.iterdir() if path.name in p.name)


def counter(seconds: float = 0.01):
    """A measure function that counts its calls."""
    calls: list[str] = []

    def measure(form: str) -> float:
        calls.append(form)
        return seconds

    return measure, calls


# --- the timing cache ----------------------------------------------------------------------------------


def test_the_cache_entry_names_spin_cores_quota_runtimes_and_machine(monkeypatch, tmp_path):
    from importlib import metadata

    from sentiment.machine import machine_key

    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "cpu.max").write_text("150000 100000\n")
    monkeypatch.setattr(timing_cache, "CGROUP", cgroup)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    spinning, sleeping = cache_entry("sst2", "distill", "abc123", True), cache_entry("sst2", "distill", "abc123", False)
    assert spinning != sleeping and " | spin | " in spinning and " | no spin | " in sleeping
    assert spinning.startswith("sst2 | distill | abc123 | ") and spinning.endswith(machine_key())
    assert " | cores 3 quota 1.5 | " in spinning
    assert f"torch {metadata.version('torch')}" in spinning and f"onnxruntime {metadata.version('onnxruntime')}" in spinning
    (cgroup / "cpu.max").write_text("max 100000\n")
    assert " | cores 3 | " in cache_entry("sst2", "distill", "abc123", True)


def test_timings_are_measured_once_then_read_and_the_newest_entries_kept(tmp_path, monkeypatch):
    path = tmp_path / "cache" / "auto_timings.json"
    measure, calls = counter()
    assert cached_timings("one", ["onnx", "torch"], measure, path) == {"onnx": 0.01, "torch": 0.01}
    timing_cache.in_memory.clear()  # a new process: read from the file
    assert cached_timings("one", ["torch", "onnx"], measure, path) == {"torch": 0.01, "onnx": 0.01}
    assert calls == ["onnx", "torch"] and siblings(path) == ["auto_timings.json"]
    cached_timings("one", ["onnx", "onnx_int8_static"], measure, path)  # only the new form is timed
    assert calls == ["onnx", "torch", "onnx_int8_static"]
    monkeypatch.setattr(timing_cache, "MAX_ENTRIES", 3)
    for name in ("two", "three", "four"):
        cached_timings(name, ["torch"], measure, path)
    entries = json.loads(path.read_text())["entries"]
    assert sorted(entries) == ["four", "three", "two"]  # "one", the oldest, pruned
    assert [entries[n]["order"] for n in ("two", "three", "four")] == [3, 4, 5]  # "one" was written twice


@faults
@pytest.mark.parametrize(
    "content", [b"{not json", b'{"format": 1, "entries": {"x": {"order": 1, "seconds": {"onnx": 0.1}}', b"\xff\xfe", b"[]"]
)
def test_a_corrupt_or_half_written_timing_cache_is_timed_again_with_one_notice(tmp_path, capsys, content):
    path = tmp_path / "auto_timings.json"
    path.write_bytes(content)
    measure, calls = counter(0.5)
    assert cached_timings("entry", ["torch", "onnx"], measure, path) == {"torch": 0.5, "onnx": 0.5}
    err = capsys.readouterr().err
    assert calls == ["torch", "onnx"] and err.count("\n") == 1
    assert err.startswith(f"notice: the timing cache {path} cannot be read (") and err.endswith("): timing again\n")
    assert json.loads(path.read_text())["entries"]["entry"]["seconds"] == {"onnx": 0.5, "torch": 0.5}  # rewritten whole


@contextlib.contextmanager
def read_only_folder(folder: Path):
    """`folder` made read-only: a read-only tmpfs where this process may mount one (root ignores file modes),
    else its mode."""
    folder.mkdir(parents=True)
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True)
        if mounted.returncode != 0:
            pytest.skip(f"root, and no read-only tmpfs can be mounted: {mounted.stderr.decode().strip()}")
        try:
            yield folder
        finally:
            subprocess.run(["umount", str(folder)], check=True)
        return
    folder.chmod(0o500)
    try:
        yield folder
    finally:
        folder.chmod(0o700)


@faults
def test_a_read_only_or_unusable_cache_folder_keeps_the_timings_in_memory(tmp_path, capsys):
    measure, calls = counter()
    with read_only_folder(tmp_path / "ro") as folder:
        path = folder / "auto_timings.json"
        assert cached_timings("entry", ["torch"], measure, path) == {"torch": 0.01}
        err = capsys.readouterr().err
        assert err.startswith(f"notice: cannot write the timing cache {path} (Read-only file system") or "Permission" in err
        assert err.count("\n") == 1 and not path.exists()
        assert cached_timings("entry", ["torch"], measure, path) == {"torch": 0.01}  # the same process: from memory
        assert calls == ["torch"] and capsys.readouterr().err == ""
    (tmp_path / "file").write_text("a file where the cache folder would be")
    path = tmp_path / "file" / "sentiment" / "auto_timings.json"
    assert cached_timings("entry", ["onnx"], measure, path) == {"onnx": 0.01}
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write the timing cache" in err and "kept in memory" in err


# --- kills and a full disk --------------------------------------------------------------------------------


@faults
def test_predict_killed_mid_write_leaves_no_output_file(checkout):
    (checkout / "in.txt").write_text("\n".join(reviews(40_000)) + "\n")
    command = [sys.executable, "-m", "sentiment.cli", "predict", "--dataset", "toy", "--form", "torch"]
    proc = subprocess.Popen([*command, "--input", "in.txt", "--output", "out.csv"], cwd=checkout, env=ENV, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not any(p.stat().st_size for p in checkout.glob(".out.csv.*")):  # the first chunk is written
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "predict never started writing"
        time.sleep(0.005)
    proc.kill()
    assert proc.wait(30) == -signal.SIGKILL
    assert not (checkout / "out.csv").exists()
    [temporary] = siblings(checkout / "out.csv")  # SIGKILL allows no cleanup: only the hidden temporary file
    assert temporary.startswith(".out.csv.") and temporary.endswith(".tmp")


STAGE = """import os, sys, time
from pathlib import Path
from sentiment.io import atomic_dir
with atomic_dir("out") as tmp:
    for i in range(5):
        (tmp / f"part{i}.txt").write_text(Path("prepared.txt").read_text() * 100)
        if i == 2 and Path("slow").exists():  # not a dep: the test's way to hold the stage mid-write
            Path("stage.pid").write_text(str(os.getpid()))
            time.sleep(120)
"""


PREPARE = "open('prepared.txt', 'w').write('text ' * 50)"


@faults
def test_a_stage_killed_mid_write_leaves_no_output_and_only_it_reruns(tmp_path):
    dvc = str(Path(sys.executable).parent / "dvc")

    def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120, check=check)

    (tmp_path / "write.py").write_text(STAGE)
    (tmp_path / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "stages": {
                    "prepare": {"cmd": f"{sys.executable} -c {PREPARE!r}", "outs": ["prepared.txt"]},
                    "write": {"cmd": f"{sys.executable} write.py", "deps": ["prepared.txt", "write.py"], "outs": ["out"]},
                }
            }
        )
    )
    sh(dvc, "init", "--no-scm", "-q")
    (tmp_path / "slow").touch()
    repro = subprocess.Popen([dvc, "repro"], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "stage.pid").exists():
        assert repro.poll() is None and time.monotonic() < deadline, repro.stdout.read() if repro.poll() is not None else ""
        time.sleep(0.05)
    os.kill(int((tmp_path / "stage.pid").read_text()), signal.SIGKILL)
    output = repro.communicate(timeout=120)[0]
    assert repro.returncode != 0 and "failed" in output.lower(), output
    assert (tmp_path / "prepared.txt").exists() and not (tmp_path / "out").exists()
    assert all(p.name.startswith(".out.") for p in tmp_path.iterdir() if "out" in p.name and p.name != "prepared.txt")
    (tmp_path / "slow").unlink()
    rerun = sh(dvc, "repro").stdout
    assert "Stage 'prepare' didn't change, skipping" in rerun and "Running stage 'write'" in rerun, rerun
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"part{i}.txt" for i in range(5)]
    assert "Data and pipelines are up to date" in sh(dvc, "status").stdout


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "256k"):
    """A tmpfs of `size` at `folder` (True), or the folder alone (False) where this process cannot mount one."""
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
    mounted = os.geteuid() == 0 and subprocess.run(mount, capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)


@faults
def test_a_full_disk_is_one_line_and_nothing_half_written(checkout, monkeypatch, capsys):
    """Output bigger than the disk: a tmpfs of 64 kB where the sandbox allows one (a real interpreter), else an
    ENOSPC injected into the output file's writes (in this process)."""
    (checkout / "in.txt").write_text("\n".join(reviews(2_000)) + "\n")
    disk = checkout / "disk"
    target = disk / "out.csv"
    args = ["predict", "--dataset", "toy", "--form", "torch", "--input", "in.txt", "--output", str(target)]
    with small_disk(disk, "64k") as mounted:
        if mounted:
            done = subprocess.run([sys.executable, "-m", "sentiment.cli", *args], cwd=checkout, env=ENV, capture_output=True)
            code, err = done.returncode, done.stderr.decode()
        else:
            import sentiment.cli

            def full(path, *a, **kw):
                stream = open(path, *a, **kw)  # noqa: SIM115
                written = 0

                def write(text: str) -> int:
                    nonlocal written
                    written += len(text)
                    if written > 64_000:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    return type(stream).write(stream, text)

                stream.write = write
                return stream

            monkeypatch.setattr(sentiment.cli, "open", full, raising=False)
            with pytest.raises(SystemExit) as exit_info:
                sentiment.cli.main(args)
            code, err = exit_info.value.code, capsys.readouterr().err
        lines = [line for line in err.splitlines() if not line.startswith("model ")]
        assert code == 1 and lines == [f"error: cannot write {target}: No space left on device"], err
        assert os.listdir(disk) == []


# --- a server under load --------------------------------------------------------------------------------


def load(url: str, seconds: float, expected_file: str, report_file: str, cpus: list[int]) -> None:
    """The load generator (its own process, pinned to `cpus`): 16 clients for `seconds`, every tenth request a
    malformed body of the corpus; each valid answer compared with `sentiment predict`'s for its text."""
    import asyncio

    import httpx

    os.sched_setaffinity(0, set(cpus))
    expected = json.loads(Path(expected_file).read_text())
    texts = list(expected)
    corpus = sorted((REPO / "tests" / "malformed" / "http").iterdir())
    bad = [("/v1/predict" if p.name.startswith("v1_") else "/predict", p.read_bytes()) for p in corpus]
    report = {"statuses": {}, "valid": 0, "mismatches": [], "errors": []}

    def check(text: str, answer: dict) -> None:
        want = expected[text]
        probabilities = answer["probabilities"]
        if answer["label"] != want["label"] or any(abs(probabilities[k] - v) > 2e-6 for k, v in want["probabilities"].items()):
            report["mismatches"].append({"text": text, "got": answer, "want": want})

    async def client(number: int, until: float) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            i = number
            while time.monotonic() < until:
                i += 16
                try:
                    if i % 10 == 0:
                        route, body = bad[(i // 10) % len(bad)]
                        response = await http.post(route, content=body)
                    else:
                        text = texts[i % len(texts)]
                        response = await http.post("/v1/predict", json={"texts": [text]})
                        if response.status_code == 200:
                            report["valid"] += 1
                            check(text, response.json()["predictions"][0])
                except httpx.HTTPError as err:
                    report["errors"].append(f"{type(err).__name__}: {err}")
                    continue
                key = str(response.status_code)
                report["statuses"][key] = report["statuses"].get(key, 0) + 1

    async def run() -> None:
        until = time.monotonic() + seconds
        await asyncio.gather(*(client(n, until) for n in range(16)))

    asyncio.run(run())
    Path(report_file).write_text(json.dumps(report))


def resident_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


def start_server(root: Path, port: int, cpus: set[int]) -> subprocess.Popen:
    command = [sys.executable, "-m", "sentiment.cli", "serve", "--dataset", "toy", "--form", "torch", "--port", str(port)]
    env = {**ENV, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, cwd=root, env=env, stderr=subprocess.PIPE, preexec_fn=lambda: os.sched_setaffinity(0, cpus))


@faults
def test_a_server_under_load_with_malformed_requests_answers_right_with_no_500_and_steady_memory(checkout, tmp_path):
    import httpx
    from test_serve import free_port, metric_samples

    from sentiment.cli import main

    texts = reviews(40, words=6) + [" ".join(reviews(3, words=40))]  # one text longer than max_length: windows
    (checkout / "texts.txt").write_text("\n".join(texts) + "\n")
    main(["predict", "--dataset", "toy", "--form", "torch", "--input", "texts.txt", "--output", "offline.jsonl"])
    offline = pd.read_json(checkout / "offline.jsonl", lines=True)
    expected = {
        row.text: {"label": row.label, "probabilities": {"negative": row.prob_negative, "positive": row.prob_positive}}
        for row in offline.itertuples()
    }
    (tmp_path / "expected.json").write_text(json.dumps(expected))
    cpus = sorted(os.sched_getaffinity(0))
    server_cpus, client_cpus = {cpus[0]}, cpus[1:] or cpus
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(checkout, port, server_cpus)
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            assert server.poll() is None and time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.2)

        def generator(seconds: float, report: Path) -> subprocess.Popen:
            arguments = f"{url!r}, {seconds}, {str(tmp_path / 'expected.json')!r}, {str(report)!r}, {client_cpus}"
            return subprocess.Popen([sys.executable, "-c", f"import test_faults; test_faults.load({arguments})"], env=ENV)

        assert generator(3, tmp_path / "warm.json").wait(120) == 0  # the working set after the first requests: the start
        start = peak = resident_kb(server.pid)
        loading = generator(LOAD_SECONDS, tmp_path / "load.json")
        while loading.poll() is None:
            peak = max(peak, resident_kb(server.pid))
            time.sleep(0.5)
        assert loading.returncode == 0
        report = json.loads((tmp_path / "load.json").read_text())
        samples = metric_samples(httpx.get(f"{url}/metrics").text)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
    statuses = report["statuses"]
    answered = sum(statuses.values())
    assert not report["errors"] and "500" not in statuses, report
    assert report["valid"] > 10 * LOAD_SECONDS and not report["mismatches"], report["mismatches"][:3]
    assert sum(n for s, n in statuses.items() if s.startswith("4")) >= answered // 10 - 16, statuses
    assert not [k for k, v in samples.items() if v and (k[0] == "sentiment_unhandled_errors_total" or ("status", "500") in k[1])]
    assert peak <= start * 1.10, f"resident memory grew from {start} kB to {peak} kB"
