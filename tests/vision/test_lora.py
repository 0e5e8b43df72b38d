"""LoRA on timm ViTs: attention and MLP layers adapted (not the patch embedding's conv), merged into a timm export."""

from __future__ import annotations

import numpy as np
import timm
import torch
import torch.nn.functional as F

import finetuner
from finetuner.lora import add_adapters, check_settings


def test_a_timm_vit_adapts_its_blocks_and_exports_merged_to_timm(tmp_path):
    model = finetuner.build_model("timm/vit_tiny_patch16_224", pretrained=False, image_size=32)
    add_adapters(model, check_settings({"r": 4}))
    assert model.lora["target_modules"] == {"image": ["qkv", "proj", "fc1", "fc2"]}
    adapters = {name: p for name, p in model.named_parameters() if ".lora_" in name}
    assert not any("patch_embed" in name for name in adapters)  # its conv is named proj too
    assert {name for name, p in model.named_parameters() if p.requires_grad} == set(adapters)
    rng = np.random.default_rng(0)
    pixels = model.tower().preprocess([rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(2)])["pixel_values"]
    model({"pixel_values": pixels}).sum().backward()
    assert all(p.grad is not None for p in adapters.values())

    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in adapters.items():
            if ".lora_B." in name:
                p.normal_(std=0.05)
    folder = finetuner.export_timm(model, tmp_path / "timm")
    exported = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    with torch.no_grad():
        ours = model.eval()({"pixel_values": pixels}).numpy()
        theirs = F.normalize(exported(pixels), dim=-1).numpy()
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
