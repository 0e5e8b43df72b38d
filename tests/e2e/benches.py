"""Loading a benchmark script, bench/<name>.py, into a test: a fresh module, with bench/ on sys.path for its imports."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load_bench(name: str, module_name: str | None = None) -> ModuleType:
    """``bench/<name>.py`` as a module of its own (``module_name``, default ``<name>_under_test``), executed anew.

    Module-level settings such as a script's data folder are read now: set ``FINETUNER_DATA`` first.
    """
    if str(BENCH) not in sys.path:
        sys.path.append(str(BENCH))  # the scripts import benchkit (and siblings) by name, as when run as scripts
    spec = importlib.util.spec_from_file_location(module_name or f"{name}_under_test", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
