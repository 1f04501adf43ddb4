"""dvc.yaml's generated parts are current: each stage's code deps are its script and the library modules
the script imports (directly or through others), and the top-level blocks follow params.yaml; no stage
script imports another."""

import re
import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from sentiment.report.dvc_blocks import code_deps, with_code_deps

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
SCRIPTS = sorted((REPO / "stages").glob("*.py"))


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_code_deps_are_the_script_and_the_modules_it_imports(stage):
    body = STAGES[stage].get("do", STAGES[stage])
    script = re.match(r"python -m stages\.(\w+)", body["cmd"]).group(1)
    declared = {d for d in body["deps"] if d.endswith(".py")}
    assert declared == set(code_deps(f"stages/{script}.py", REPO))


def test_imports_inside_functions_count_and_a_new_import_rewrites_the_deps(tmp_path):
    (tmp_path / "stages").mkdir()
    (tmp_path / "sentiment").mkdir()
    (tmp_path / "sentiment" / "a.py").write_text("def f():\n    from sentiment import b\n")
    (tmp_path / "sentiment" / "b.py").write_text("import json\n")
    (tmp_path / "stages" / "s.py").write_text("from sentiment.a import f\n")
    assert code_deps("stages/s.py", tmp_path) == ["stages/s.py", "sentiment/a.py", "sentiment/b.py"]
    text = (
        "stages:\n  s:\n    cmd: python -m stages.s\n    deps:\n      - stages/s.py\n      - sentiment/gone.py\n      - data/x\n"
    )
    assert with_code_deps(text, tmp_path).splitlines()[4:] == [
        "      - stages/s.py",
        "      - sentiment/a.py",
        "      - sentiment/b.py",
        "      - data/x",
    ]


@pytest.mark.parametrize("script", [p.name for p in SCRIPTS if p.name != "__init__.py"])
def test_no_stage_script_imports_another(script):
    others = {f"stages/{p.name}" for p in SCRIPTS} - {f"stages/{script}"}
    assert not set(code_deps(f"stages/{script}", REPO)) & others


def test_the_generated_parts_are_current():
    result = subprocess.run(
        [sys.executable, "-m", "sentiment.report.dvc_blocks", "--check"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
