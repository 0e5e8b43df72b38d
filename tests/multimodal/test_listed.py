"""The listed members of the open families: their true dimensions, and each builds offline at random init."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import finetuner
from finetuner.cli import main
from tests.hubcache import hf_home_fixture, hub_snapshot, use_hf_home

# From the models' real configs (SigLIP: the text head and image width; open_clip: embed_dim), kept
# here so a wrong table entry cannot pass by agreeing with itself.
TRUE_DIMS = {
    "hf-clip:google/siglip-base-patch16-224": 768,
    "hf-clip:google/siglip2-base-patch16-224": 768,
    "hf-clip:google/siglip-so400m-patch14-384": 1152,
    "open_clip/ViT-B-32:laion2b_s34b_b79k": 512,
    "open_clip/ViT-B-16:laion2b_s34b_b88k": 512,
}
HF_PREFIX, OPEN_CLIP_PREFIX = "hf-clip:", "open_clip/"


def _write_listed_siglips(hf_home: Path) -> None:
    """Tiny random SigLIPs at the listed models' true widths, under their real names."""
    from tests.multimodal.tiny_dual import write_tiny_siglip

    for name, dim in TRUE_DIMS.items():
        if name.startswith(HF_PREFIX):
            write_tiny_siglip(hub_snapshot(hf_home, name[len(HF_PREFIX) :]), dim=dim)


listed_home = hf_home_fixture(_write_listed_siglips)


def test_listed_models_have_their_true_dims_and_say_the_family_builds(capsys):
    assert main(["models", "--task", "text-to-image", "--json"]) == 0
    import json

    rows = {row["model"]: row for row in json.loads(capsys.readouterr().out)}
    assert {name: rows[name]["output_dim"] for name in TRUE_DIMS} == TRUE_DIMS
    for name in TRUE_DIMS:
        family = "hf-clip:<model id or folder>" if name.startswith(HF_PREFIX) else "open_clip/<architecture>[:<pretrained tag>]"
        assert rows[name]["description"].endswith(f"any {family} builds") and rows[name]["plugin"] == "multimodal"
    assert finetuner.get_spec("google/siglip-base-patch16-224").name == "hf-clip:google/siglip-base-patch16-224"


def test_listed_open_clip_dims_are_open_clips_own():
    open_clip = pytest.importorskip("open_clip")
    for name, dim in TRUE_DIMS.items():
        if name.startswith(OPEN_CLIP_PREFIX):
            architecture, tag = name[len(OPEN_CLIP_PREFIX) :].split(":")
            assert open_clip.get_model_config(architecture)["embed_dim"] == dim
            assert tag in open_clip.list_pretrained_tags_by_model(architecture)


def test_listing_imports_no_deep_learning_library():
    code = (
        "import sys, finetuner\n"
        "names = {s.name for s in finetuner.list_models('text-to-image')}\n"
        f"assert {set(TRUE_DIMS)!r} <= names, names\n"
        "print(sorted(m for m in ('torch', 'transformers', 'open_clip', 'PIL', 'numpy') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("name", list(TRUE_DIMS))
def test_each_listed_model_builds_offline_at_its_dim(name, listed_home, monkeypatch):
    if name.startswith(OPEN_CLIP_PREFIX):
        pytest.importorskip("open_clip")
    use_hf_home(monkeypatch, listed_home)
    # the SigLIPs load their (random) weights from the cache; open_clip builds random weights offline
    model = finetuner.build_model(name, pretrained=name.startswith(HF_PREFIX))
    assert model.tower("text").output_dim == model.tower("image").output_dim == model.output_dim == TRUE_DIMS[name]
    import torch

    size = 224 if name.startswith(OPEN_CLIP_PREFIX) else 32
    assert finetuner.encode(model, ["a cat"], modality="text", precision="fp32").shape == (1, TRUE_DIMS[name])
    assert finetuner.encode(model, [torch.rand(3, size, size)], modality="image", precision="fp32").shape == (1, TRUE_DIMS[name])
