"""dvc.yaml's generated parts are current: each stage's code deps are its script and the library modules
the script imports (directly or through others), and the top-level blocks follow params.yaml; no stage
script imports another."""

import ast
import re
import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from sentiment.report.dvc_blocks import CODE_DEP, CODE_DEPS_NOTE, code_deps, with_code_deps

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
    rewritten = with_code_deps(text, tmp_path)
    assert rewritten.splitlines()[4:] == [
        f"      {CODE_DEPS_NOTE}",
        "      - stages/s.py",
        "      - sentiment/a.py",
        "      - sentiment/b.py",
        "      - data/x",
    ]
    assert with_code_deps(rewritten, tmp_path) == rewritten  # the note is not repeated


def test_a_module_imported_from_its_package_is_a_dep_and_the_package_is_not(tmp_path):
    (tmp_path / "stages").mkdir()
    (tmp_path / "sentiment" / "models").mkdir(parents=True)
    (tmp_path / "sentiment" / "__init__.py").write_text('"""The library."""\n')
    (tmp_path / "sentiment" / "models" / "__init__.py").write_text('"""Models."""\n')
    (tmp_path / "sentiment" / "models" / "training.py").write_text("import sentiment.models.light\n")
    (tmp_path / "sentiment" / "models" / "light.py").write_text("")
    (tmp_path / "stages" / "s.py").write_text("from sentiment.models import training\n")
    assert code_deps("stages/s.py", tmp_path) == ["stages/s.py", "sentiment/models/light.py", "sentiment/models/training.py"]


@pytest.mark.parametrize("init", sorted(p.relative_to(REPO).as_posix() for p in (REPO / "sentiment").rglob("__init__.py")))
def test_package_init_files_hold_only_a_docstring(init):
    # which is why no stage lists them as code deps: nothing in them can change what a stage computes
    body = ast.parse((REPO / init).read_text()).body
    assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant), init


def test_every_block_of_generated_code_deps_is_marked():
    lines = (REPO / "dvc.yaml").read_text().splitlines()
    firsts = [i for i, line in enumerate(lines) if CODE_DEP.match(line) and not CODE_DEP.match(lines[i - 1])]
    assert firsts and all(lines[i - 1].strip() == CODE_DEPS_NOTE for i in firsts)


def test_stages_holds_only_stages():
    commands = {m.group(1) for m in re.finditer(r"cmd: python -m stages\.(\w+)", (REPO / "dvc.yaml").read_text())}
    assert {p.stem for p in SCRIPTS} - {"__init__"} == commands


@pytest.mark.parametrize("script", [p.name for p in SCRIPTS if p.name != "__init__.py"])
def test_no_stage_script_imports_another(script):
    others = {f"stages/{p.name}" for p in SCRIPTS} - {f"stages/{script}"}
    assert not set(code_deps(f"stages/{script}", REPO)) & others


def test_the_generated_parts_are_current():
    result = subprocess.run(
        [sys.executable, "-m", "sentiment.report.dvc_blocks", "--check"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_stage_names_per_dataset_stages_and_results_files_come_from_dvc_yaml(tmp_path):
    from sentiment.stage import dataset_stages, pipeline_stages, stage_results

    (tmp_path / "dvc.yaml").write_text(
        "stages:\n"
        "  b:\n    foreach: ${datasets}\n    do:\n      cmd: python -m stages.b ${key}\n"
        "      outs:\n        - results/${key}/b.json:\n            cache: false\n"
        "  a:\n    foreach: ${extra.datasets}\n    do:\n      cmd: python -m stages.a ${item}\n"
        "      outs:\n        - results/${item}/a_summary.json\n"
        "  c:\n    foreach: ${datasets}\n    do:\n      cmd: python -m stages.c ${key}\n"
    )
    assert list(pipeline_stages(tmp_path / "dvc.yaml")) == ["b", "a", "c"]  # as written, not sorted
    assert dataset_stages(tmp_path / "dvc.yaml") == ["b", "c"]
    assert stage_results(tmp_path / "dvc.yaml") == [("b", True), ("a_summary", False)]
    assert list(pipeline_stages())[0] == "split" and list(pipeline_stages())[-1] == "card"  # the repository's, in order
