"""Plugins and examples build on the public API only; the package root stays light yet typed."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import finetuner
import finetuner.models

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("plugins", "examples", "tests/plugins")  # everything written against finetuner from outside it
PUBLIC = {"finetuner": {*finetuner.__all__, "models"}, "finetuner.models": set(finetuner.models.__all__)}


def internal_imports(source: str) -> Iterator[tuple[int, str]]:
    """``(line, what)`` for each import of a finetuner module or name outside :data:`PUBLIC`."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            pairs = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            pairs = [(node.module, alias.name) for alias in node.names]
        else:
            continue
        for module, name in pairs:
            if module.partition(".")[0] != "finetuner":
                continue
            if module not in PUBLIC:
                yield node.lineno, module
            elif name is not None and name not in PUBLIC[module]:
                yield node.lineno, f"{module}.{name}"


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("import finetuner\nfrom finetuner import DataError, hookimpl\nfrom finetuner.models import Tower", []),
        ("from finetuner.models.tower import Tower", [(1, "finetuner.models.tower")]),
        ("import os\nimport finetuner.runtime as rt", [(2, "finetuner.runtime")]),
        ("from finetuner.models import _inference", [(1, "finetuner.models._inference")]),
        ("from finetuner import errors", [(1, "finetuner.errors")]),
    ],
)
def test_the_scan_finds_internal_imports(source, found):
    assert list(internal_imports(source)) == found


def test_plugins_and_examples_import_only_the_public_modules():
    files = [path for folder in SCANNED for path in sorted((ROOT / folder).rglob("*.py"))]
    assert len(files) > 20
    offending = [
        f"{path.relative_to(ROOT)}:{line}: {what}" for path in files for line, what in internal_imports(path.read_text())
    ]
    assert not offending, "import from `finetuner` or `finetuner.models` only:\n" + "\n".join(offending)


def test_type_checkers_see_each_lazy_name_where_it_is_imported_from():
    tree = ast.parse(Path(finetuner.__file__).read_text())
    (block,) = [n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]
    declared = {alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert declared == finetuner._LAZY


def test_importing_finetuner_imports_no_deep_learning_library():
    code = "import sys, finetuner; print(sorted(m for m in ('torch', 'transformers', 'timm', 'numpy') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"
