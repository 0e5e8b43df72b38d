"""`finetuner export --timm`: timm's own loader rebuilds the backbone from the folder and gives the model's embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

import finetuner
from finetuner.cli import main


def _pixels(model) -> torch.Tensor:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (70, 90, 3), dtype=np.uint8), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)]
    return model.tower().preprocess(images)["pixel_values"]


def _features(timm_model, pixels: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return F.normalize(timm_model.eval()(pixels), dim=-1).numpy()


def _ours(model, pixels: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model.eval()({"pixel_values": pixels}).numpy()


def test_resnet18_loads_with_timm_create_model(tmp_path: Path) -> None:
    model = finetuner.build_model("timm/resnet18", pretrained=False, image_size=64)
    finetuner.save(model, tmp_path / "artifact")
    assert main(["export", "--timm", str(tmp_path / "artifact"), "-o", str(tmp_path / "timm")]) == 0
    folder = tmp_path / "timm"
    config = json.loads((folder / "config.json").read_text())
    assert (config["architecture"], config["num_classes"]) == ("resnet18", 0)
    assert config["pretrained_cfg"]["input_size"] == [3, 64, 64]
    assert config["pretrained_cfg"]["mean"] == [0.485, 0.456, 0.406]

    pixels = _pixels(model)
    overlay = timm.create_model(
        "resnet18", pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": str(folder / "model.safetensors")}
    )
    np.testing.assert_allclose(_features(overlay, pixels), _ours(model, pixels), atol=1e-5)
    local = timm.create_model(f"local-dir:{folder}", pretrained=True)
    assert tuple(timm.data.resolve_data_config(model=local)["input_size"]) == (3, 64, 64)
    np.testing.assert_allclose(_features(local, pixels), _ours(model, pixels), atol=1e-5)


def test_a_vit_built_for_another_size_records_it(tmp_path: Path) -> None:
    model = finetuner.build_model("timm/test_vit", pretrained=False, image_size=64)
    folder = finetuner.export_timm(model, tmp_path / "timm")
    assert json.loads((folder / "config.json").read_text())["model_args"] == {"img_size": [64, 64]}
    pixels = _pixels(model)
    np.testing.assert_allclose(
        _features(timm.create_model(f"local-dir:{folder}", pretrained=True), pixels), _ours(model, pixels), atol=1e-5
    )


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("timm/test_convnext", {"output_dim": 8}, r"projection head \(output_dim=8\)"),
        ("timm/test_convnext", {"pooling": "gem"}, r"timm has no GeM pooling"),
        (
            "efficientnet_b0",
            {},
            r"the image tower \(ImageTower\) cannot be exported to timm: it exports to no other library's format",
        ),
    ],
)
def test_what_timm_cannot_hold_is_refused(tmp_path: Path, name: str, options: dict, message: str) -> None:
    model = finetuner.build_model(name, pretrained=False, **options)
    with pytest.raises(finetuner.ExportError, match=message):
        finetuner.export_timm(model, tmp_path / "timm")
    assert not (tmp_path / "timm").exists()
