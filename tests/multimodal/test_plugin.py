"""Registration and listing: the CLIP models and the listed open-family members, without importing torch or transformers."""

from __future__ import annotations

import json
import subprocess
import sys

import finetuner
from finetuner.cli import main

CLIP_DIMS = {"openai/clip-vit-base-patch32": 512, "openai/clip-vit-base-patch16": 512, "openai/clip-vit-large-patch14": 768}


def test_models_command_lists_the_clip_models(capsys):
    assert main(["models", "--task", "text-to-image", "--json"]) == 0
    rows = {row["model"]: row for row in json.loads(capsys.readouterr().out)}
    for name, dim in CLIP_DIMS.items():
        assert rows[name]["output_dim"] == dim
        assert rows[name]["task"] == "text-to-image"
        assert rows[name]["architecture"] == "transformer"
        assert rows[name]["plugin"] == "multimodal"
    assert rows["openai/clip-vit-base-patch32"]["description"] == "Pretrained on text image pairs by OpenAI"


def test_specs_resolve_by_name():
    spec = finetuner.get_spec("openai/clip-vit-large-patch14")
    assert (spec.output_dim, spec.plugin, spec.build) == (
        768,
        "multimodal",
        "finetuner_multimodal.clip:build_clip_vit_large_patch14",
    )


def test_hook_module_imports_no_deep_learning_library():
    code = (
        "import sys, finetuner_multimodal.plugin as p; "
        "from finetuner.plugins import PluginManager; m = PluginManager(); m.register(p, 'multimodal'); "
        "assert len(m.registry.specs()) == 8; "
        "print(sorted(x for x in ('torch', 'transformers', 'PIL', 'numpy') if x in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
