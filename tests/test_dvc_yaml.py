"""dvc.yaml names, as each stage's code deps, exactly its script and the library modules the script
imports (directly or through others); no stage script imports another; the plots block is current."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
SCRIPTS = sorted((REPO / "stages").glob("*.py"))


def imported_files(path: Path) -> set[str]:
    """Repository-relative paths of `path` and every `sentiment`/`stages` module it imports, transitively."""
    seen, todo = set(), [path.relative_to(REPO).as_posix()]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for node in ast.walk(ast.parse((REPO / name).read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            else:
                continue
            for module in modules:
                file = module.replace(".", "/") + ".py"
                if module.split(".")[0] in ("sentiment", "stages") and (REPO / file).exists():
                    todo.append(file)
    return seen


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_code_deps_are_the_script_and_the_modules_it_imports(stage):
    body = STAGES[stage].get("do", STAGES[stage])
    script = re.match(r"python -m stages\.(\w+)", body["cmd"]).group(1)
    declared = {d for d in body["deps"] if d.endswith(".py")}
    assert declared == imported_files(REPO / "stages" / f"{script}.py")


@pytest.mark.parametrize("script", [p.name for p in SCRIPTS if p.name != "__init__.py"])
def test_no_stage_script_imports_another(script):
    others = {f"stages/{p.name}" for p in SCRIPTS} - {f"stages/{script}"}
    assert not imported_files(REPO / "stages" / script) & others


def test_the_plots_block_is_generated_from_params():
    result = subprocess.run([sys.executable, "-m", "sentiment.dvc_blocks", "--check"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
