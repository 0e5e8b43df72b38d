"""Image towers own their preprocessing: every input kind, the weights' own transforms, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("finetuner_vision", reason="finetuner-vision is not installed")

import finetuner  # noqa: E402


@pytest.fixture(scope="module")
def effnet() -> finetuner.EmbeddingModel:
    return finetuner.build_model("efficientnet_b0", pretrained=False).eval()


@pytest.fixture(scope="module")
def timm_model() -> finetuner.EmbeddingModel:
    return finetuner.build_model("timm/test_convnext", pretrained=False).eval()


@pytest.fixture(scope="module")
def timm_tower(timm_model):
    return timm_model.tower()


def test_every_input_kind_becomes_a_normalised_batch(effnet, image_files, rgb_array) -> None:
    pil = Image.fromarray(rgb_array)
    items = [
        str(image_files["png"]),
        image_files["jpg"],
        pil,
        pil.convert("L"),
        pil.convert("P"),
        pil.convert("RGBA"),
        rgb_array,
        rgb_array[..., 0],
        rgb_array[..., :1],
        torch.from_numpy(rgb_array).permute(2, 0, 1).float() / 255,
        torch.rand(96, 128),
        torch.from_numpy(rgb_array).permute(2, 0, 1).contiguous(),
    ]
    pixels = effnet.tower().preprocess(items)["pixel_values"]
    assert pixels.shape == (len(items), 3, 224, 224)
    assert pixels.dtype == torch.float32
    # lossless routes to the same picture give the same pixels
    for index in (2, 5, 6):
        torch.testing.assert_close(pixels[index], pixels[0], rtol=0, atol=0)
    palette_as_rgb = effnet.tower().preprocess([pil.convert("P").convert("RGB")])["pixel_values"][0]
    torch.testing.assert_close(pixels[4], palette_as_rgb, rtol=0, atol=0)
    torch.testing.assert_close(pixels[7], pixels[8], rtol=0, atol=0)
    torch.testing.assert_close(pixels[11], pixels[9], rtol=0, atol=1e-6)


def test_grayscale_file_and_array_agree(effnet, image_files, rgb_array) -> None:
    gray = np.asarray(Image.fromarray(rgb_array).convert("L"))
    pixels = effnet.tower().preprocess([image_files["gray"], gray])["pixel_values"]
    torch.testing.assert_close(pixels[0], pixels[1], rtol=0, atol=0)
    preprocessing = effnet.tower().preprocessing
    raw = pixels[0] * preprocessing.std[0] + preprocessing.mean[0]
    torch.testing.assert_close(raw[0], raw[2])  # the same grey in every channel


def test_torchvision_preprocessing_is_the_weights_own(effnet, rgb_array) -> None:
    """The random-init model preprocesses exactly as the default ImageNet weights' transforms() do."""
    from torchvision.models import EfficientNet_B0_Weights

    reference = EfficientNet_B0_Weights.DEFAULT.transforms()
    tensor = torch.rand(3, 300, 211)
    ours = effnet.tower().preprocess([Image.fromarray(rgb_array), tensor])["pixel_values"]
    torch.testing.assert_close(ours[0], reference(Image.fromarray(rgb_array)))
    torch.testing.assert_close(ours[1], reference(tensor))
    config = effnet.tower().preprocessing.config
    assert (config["weights"], config["resize_size"], config["crop_size"], config["interpolation"]) == (
        "EfficientNet_B0_Weights.IMAGENET1K_V1",
        256,
        224,
        "bicubic",
    )


def test_timm_preprocessing_is_the_models_own(timm_tower, rgb_array) -> None:
    from timm.data import create_transform, resolve_data_config

    reference = create_transform(**resolve_data_config(model=timm_tower.backbone), is_training=False)
    pil = Image.fromarray(rgb_array)
    ours = timm_tower.preprocess([pil])["pixel_values"]
    assert ours.shape == (1, 3, 160, 160)
    torch.testing.assert_close(ours[0], reference(pil))


def test_mixed_sizes_in_one_batch_match_one_by_one(timm_model, rgb_array) -> None:
    rng = np.random.default_rng(0)
    items = [
        rgb_array,
        rng.integers(0, 256, (300, 200, 3), dtype=np.uint8),
        Image.new("RGB", (40, 500), (10, 200, 30)),
        torch.rand(3, 64, 64),
    ]
    together = finetuner.encode(timm_model, items, precision="fp32", batch_size=8)
    alone = np.concatenate([finetuner.encode(timm_model, [item], precision="fp32") for item in items])
    assert together.shape == (4, 64)
    np.testing.assert_allclose(together, alone, atol=1e-4)


def test_missing_file_names_the_file_and_index(effnet, tmp_path: Path, rgb_array) -> None:
    missing = tmp_path / "nowhere.jpg"
    with pytest.raises(finetuner.DataError, match=r"item 1: .*nowhere\.jpg"):
        effnet.tower().preprocess([rgb_array, missing])


def test_corrupt_file_names_the_file_and_index(effnet, image_files) -> None:
    with pytest.raises(finetuner.DataError, match=r"item 2: .*broken\.jpg"):
        finetuner.encode(effnet, [image_files["png"], image_files["jpg"], str(image_files["corrupt"])])


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"not": "an image"}, "cannot embed a dict"),
        (np.zeros((8, 8, 3), dtype=np.float32), "must be uint8"),
        (np.zeros((8, 8, 5), dtype=np.uint8), "1, 3 or 4 channels"),
        (torch.zeros(2, 8, 8), "CHW with 1 or 3 channels"),
        (torch.zeros(3, 8, 8, dtype=torch.int64), "float in \\[0, 1\\] or uint8"),
    ],
)
def test_unsupported_items_are_data_errors(effnet, item, message: str) -> None:
    with pytest.raises(finetuner.DataError, match=f"item 0: .*{message}"):
        effnet.tower().preprocess([item])
