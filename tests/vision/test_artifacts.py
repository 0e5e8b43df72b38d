"""Saved vision models: finetuner.save / finetuner.load round-trips and a preprocessing file readable without finetuner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("finetuner_vision", reason="finetuner-vision is not installed")

import finetuner  # noqa: E402


@pytest.mark.parametrize(
    ("name", "options"),
    [("efficientnet_b0", {"pooling": "gem"}), ("timm/test_convnext", {})],
)
def test_save_load_round_trip_gives_equal_embeddings(tmp_path: Path, image_files, rgb_array, name: str, options: dict) -> None:
    model = finetuner.build_model(name, pretrained=False, **options)
    if options.get("pooling") == "gem":
        with torch.no_grad():
            model.tower().backbone.avgpool.p.fill_(2.5)  # a tuned exponent must survive the round trip
    items = [image_files["jpg"], Image.fromarray(rgb_array).convert("RGBA"), torch.rand(3, 70, 90)]
    before = finetuner.encode(model, items, precision="fp32")
    finetuner.save(model, tmp_path / "artifact")
    config = json.loads((tmp_path / "artifact" / "finetuner.json").read_text())
    assert config["sources"][0]["name"] == name and config["sources"][0]["options"] == options
    loaded = finetuner.load(tmp_path / "artifact")
    after = finetuner.encode(loaded, items, precision="fp32")
    np.testing.assert_allclose(after, before, atol=1e-5)
    assert after.shape == (3, model.output_dim)


def test_preprocessing_config_is_plain_json(tmp_path: Path) -> None:
    model = finetuner.build_model("efficientnet_b4", pretrained=False)
    finetuner.save(model, tmp_path / "artifact")
    config = json.loads((tmp_path / "artifact" / "backbone-0" / "image_preprocessing.json").read_text())
    assert {k: config[k] for k in ("library", "resize_size", "crop_size", "interpolation")} == {
        "library": "torchvision",
        "resize_size": 384,
        "crop_size": 380,
        "interpolation": "bicubic",
    }
    assert config["mean"] == [0.485, 0.456, 0.406] and config["std"] == [0.229, 0.224, 0.225]
    assert "centre-crop 380x380" in config["steps"]


def test_loading_uses_the_saved_preprocessing(tmp_path: Path) -> None:
    """An artifact preprocesses as recorded in its folder, not as today's library default."""
    model = finetuner.build_model("timm/test_convnext", pretrained=False)
    finetuner.save(model, tmp_path / "artifact")
    path = tmp_path / "artifact" / "backbone-0" / "image_preprocessing.json"
    config = json.loads(path.read_text())
    assert config["input_size"] == [3, 160, 160] and "centre-crop 160x160" in config["steps"]
    path.write_text(json.dumps({**config, "input_size": [3, 128, 128]}))
    pixels = finetuner.load(tmp_path / "artifact").tower().preprocess([np.zeros((200, 300, 3), np.uint8)])["pixel_values"]
    assert pixels.shape == (1, 3, 128, 128)


@pytest.mark.parametrize("name", ["timm/test_vit", "efficientnet_b0"])
def test_image_size_option_resizes_inputs_and_survives_a_round_trip(tmp_path: Path, name: str) -> None:
    """``image_size`` suits small images; fixed-size models (ViTs) are built for it."""
    model = finetuner.build_model(name, pretrained=False, image_size=32)
    items = [np.zeros((8, 8), np.uint8), np.full((100, 60, 3), 200, np.uint8)]
    assert model.tower().preprocess(items)["pixel_values"].shape == (2, 3, 32, 32)
    before = finetuner.encode(model, items, precision="fp32")
    finetuner.save(model, tmp_path / "artifact")
    loaded = finetuner.load(tmp_path / "artifact")
    assert loaded.sources[0]["options"] == {"image_size": 32}
    np.testing.assert_allclose(finetuner.encode(loaded, items, precision="fp32"), before, atol=1e-5)
