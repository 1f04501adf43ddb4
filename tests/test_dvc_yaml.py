"""dvc.yaml names, as each stage's code deps, exactly the modules its command imports."""

import ast
import re

import pytest
import yaml

from conftest import REPO


def imported_stage_modules(module: str) -> set[str]:
    """`module` and every `stages.*` module it imports, directly or through others."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        tree = ast.parse((REPO / "stages" / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("stages."):
                todo.append(node.module.removeprefix("stages."))
            elif isinstance(node, ast.Import):
                todo += [a.name.removeprefix("stages.") for a in node.names if a.name.startswith("stages.")]
    return seen


STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_code_deps_are_the_imported_modules(stage):
    body = STAGES[stage].get("do", STAGES[stage])
    module = re.match(r"python -m stages\.(\w+)", body["cmd"]).group(1)
    declared = {d for d in body["deps"] if d.startswith("stages/")}
    assert declared == {f"stages/{m}.py" for m in imported_stage_modules(module)}
