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


# --- every mode and bit depth read faithfully; out-of-range, NaN and empty images refused ---------


def grey_variants(gray: np.ndarray) -> dict[str, Image.Image]:
    """The same grey picture in each deeper-than-8-bit PIL mode."""
    return {
        "I;16": Image.fromarray(gray.astype(np.uint16) * 257),
        "I": Image.fromarray(gray.astype(np.int32) * 257),
        "F": Image.fromarray(gray.astype(np.float32) / 255),
    }


def test_16_bit_32_bit_and_float_grey_read_like_8_bit(effnet, tmp_path: Path, rgb_array) -> None:
    gray = np.asarray(Image.fromarray(rgb_array).convert("L"))
    variants = grey_variants(gray)
    assert [image.mode for image in variants.values()] == ["I;16", "I", "F"]
    variants["I;16"].save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    items = [Image.fromarray(gray), tmp_path / "deep.png", *variants.values()]
    pixels = effnet.tower().preprocess(items)["pixel_values"]
    for index in range(1, len(items)):  # resized as floats rather than by PIL: the same picture within rounding
        torch.testing.assert_close(pixels[index], pixels[0], rtol=0, atol=0.05)


def test_transparent_pixels_are_white_and_other_modes_convert_exactly(effnet, tmp_path: Path, rgb_array) -> None:
    pil = Image.fromarray(rgb_array)
    clear = pil.convert("RGBA")
    clear.putalpha(0)
    Image.new("P", pil.size, 0).save(tmp_path / "clear.png", transparency=0)  # palette entry 0 (black) is transparent
    clear_palette = Image.open(tmp_path / "clear.png")
    assert clear_palette.mode == "P" and "transparency" in clear_palette.info
    bits = pil.convert("L").point(lambda v: 255 if v > 128 else 0).convert("1")
    items = [
        Image.new("RGB", pil.size, (255, 255, 255)),
        clear,
        Image.merge("LA", (pil.convert("L"), Image.new("L", pil.size, 0))),
        clear_palette,
        pil.convert("CMYK"),
        pil,
        bits,
        bits.convert("L"),
    ]
    pixels = effnet.tower().preprocess(items)["pixel_values"]
    for index in (1, 2, 3):  # fully transparent RGBA, LA and P: white
        torch.testing.assert_close(pixels[index], pixels[0], rtol=0, atol=0)
    torch.testing.assert_close(pixels[4], pixels[5], rtol=0, atol=0)
    torch.testing.assert_close(pixels[6], pixels[7], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (torch.rand(3, 8, 8) * 255, r"the float image tensor has values in \[.*\], outside \[0, 1\]"),
        (torch.rand(3, 8, 8) - 0.5, r"outside \[0, 1\]"),
        (torch.full((3, 8, 8), float("nan")), "the float image tensor has NaN pixels"),
        (Image.fromarray(np.full((8, 8), 200, dtype=np.float32)), r"mode 'F', white = 1\) has values in \[200, 200\]"),
        (Image.fromarray(np.full((8, 8), np.nan, dtype=np.float32)), r"mode 'F', white = 1\) has NaN pixels"),
        (Image.fromarray(np.full((8, 8), -5, dtype=np.int32)), r"mode 'I', white = 65535\) has values in \[-7.6.*e-05"),
        (Image.new("RGB", (0, 0)), r"the image is empty \(0x0 pixels\)"),
        (Image.new("L", (5, 0)), r"the image is empty \(5x0 pixels\)"),
        (np.zeros((0, 0, 3), dtype=np.uint8), r"the numpy image is empty \(shape \(0, 0, 3\)\)"),
        (torch.zeros(3, 0, 4), r"the image tensor is empty \(shape \(3, 0, 4\)\)"),
    ],
    ids=["floats-0-255", "negative", "nan", "F-0-255", "F-nan", "I-negative", "0x0", "5x0", "array-0x0", "tensor-3x0x4"],
)
def test_out_of_range_nan_and_empty_images_are_refused_naming_the_item(effnet, rgb_array, item, message: str) -> None:
    with pytest.raises(finetuner.DataError, match=f"item 1: .*{message}"):
        effnet.tower().preprocess([rgb_array, item])


def test_an_empty_image_file_is_named(effnet, tmp_path: Path, rgb_array) -> None:
    Image.new("RGB", (1, 1)).save(tmp_path / "empty.png")
    data = bytearray((tmp_path / "empty.png").read_bytes())
    data[16:24] = (0).to_bytes(4, "big") * 2  # IHDR width and height: 0x0
    (tmp_path / "empty.png").write_bytes(bytes(data))
    with pytest.raises(finetuner.DataError, match=r"item 1: .*empty\.png"):
        effnet.tower().preprocess([rgb_array, tmp_path / "empty.png"])
