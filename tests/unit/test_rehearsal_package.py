"""The real-binary helpers live in `rehearsal/`, shared by the tests and the benchmark."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("package", ["bench", "rehearsal"])
def test_benchmark_and_helpers_never_import_the_tests(package: str):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    offending = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path) if m == "tests" or m.startswith("tests."))
        for path in files
    }
    assert {k: v for k, v in offending.items() if v} == {}


def test_the_import_checker_sees_an_import_of_the_tests(tmp_path: Path):
    path = tmp_path / "m.py"
    path.write_text("import os\nfrom tests.conftest import require_tool\ndef f():\n    import tests.fakes\n")
    assert imported_modules(path) == {"os", "tests.conftest", "tests.fakes"}
