"""Embedding text and images with the two towers: dims, normalisation, inputs, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

import finetuner

NAME = "openai/clip-vit-base-patch32"
TEXTS = ["a photo of a cat", "a red car", "dog", "a photo of a dog " * 40]


@pytest.fixture
def model(clip_cache):
    return finetuner.build_model(NAME)


def _picture(size=(48, 40)) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_text_and_image_embeddings_share_one_normalised_space(model, tmp_path):
    path = tmp_path / "cat.png"
    _picture().save(path)
    texts = finetuner.encode(model, TEXTS, modality="text")
    images = finetuner.encode(model, [path, str(path), _picture((20, 30)).convert("L")], modality="image")
    assert texts.shape == (4, 512) and images.shape == (3, 512)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1, atol=1e-5)
    similarity = texts @ images.T
    assert similarity.shape == (4, 3)
    assert np.abs(similarity).max() <= 1 + 1e-3
    assert not np.allclose(texts[0], texts[1])


def test_embeddings_match_transformers_clip(model, clip_cache):
    reference = CLIPModel.from_pretrained(clip_cache).eval()
    tokens = CLIPTokenizer.from_pretrained(clip_cache)(TEXTS[:3], padding=True, return_tensors="pt")
    pixels = CLIPImageProcessor.from_pretrained(clip_cache)(images=[_picture()], return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        text_expected = torch.nn.functional.normalize(reference.get_text_features(**tokens).pooler_output, dim=-1)
        image_expected = torch.nn.functional.normalize(reference.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
    np.testing.assert_allclose(
        finetuner.encode(model, TEXTS[:3], modality="text", precision="fp32"), text_expected.numpy(), atol=1e-5
    )
    np.testing.assert_allclose(
        finetuner.encode(model, [_picture()], modality="image", precision="fp32"), image_expected.numpy(), atol=1e-3
    )


def test_strings_route_to_text_and_images_to_image(model):
    mixed = finetuner.encode(model, ["a red car", _picture()], precision="fp32")
    np.testing.assert_allclose(mixed[0], finetuner.encode(model, ["a red car"], modality="text", precision="fp32")[0], atol=1e-6)
    np.testing.assert_allclose(mixed[1], finetuner.encode(model, [_picture()], modality="image", precision="fp32")[0], atol=1e-6)


def test_text_is_padded_to_the_longest_and_truncated_at_the_end_token(clip_cache):
    tower = finetuner.build_model(NAME, max_length=8).tower("text")
    features = tower.preprocess(["a cat", "a photo of a dog " * 10])
    eos = tower.tokenizer.eos_token_id
    assert features["input_ids"].shape == (2, 8)
    assert features["input_ids"][1, -1] == eos  # truncation keeps the end-of-text token CLIP pools at
    assert features["attention_mask"][0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    assert tower.item_cost("a photo") > tower.item_cost("a")
    full = finetuner.build_model(NAME).tower("text").preprocess(["word " * 200])
    assert full["input_ids"].shape == (1, 77)


def test_every_image_form_gives_the_same_embedding(model, tmp_path):
    picture = _picture()
    array = np.array(picture)
    path = tmp_path / "picture.png"
    picture.save(path)
    forms = [
        picture,
        path,
        str(path),
        array,
        torch.from_numpy(array).permute(2, 0, 1).float() / 255,
        torch.from_numpy(array).permute(2, 0, 1).contiguous(),  # uint8 CHW
        Image.fromarray(np.dstack([array, np.full(array.shape[:2], 255, np.uint8)])),  # RGBA
    ]
    embeddings = finetuner.encode(model, forms, modality="image", precision="fp32")
    np.testing.assert_allclose(embeddings, np.repeat(embeddings[:1], len(forms), axis=0), atol=1e-5)


def test_grey_and_high_depth_images_are_read_as_grey(model):
    grey = np.random.default_rng(1).integers(0, 256, (30, 30), dtype=np.uint8)
    forms = [
        Image.fromarray(grey),  # L
        grey,  # HW array
        grey[:, :, None],  # HWC with one channel
        Image.fromarray(grey.astype(np.uint16) * 257),  # 16-bit: would saturate if converted naively
        Image.fromarray(grey.astype(np.float32) / 255),  # F, in [0, 1]
        Image.fromarray(np.dstack([grey] * 3)).convert("P", palette=Image.Palette.ADAPTIVE, colors=256),
    ]
    embeddings = finetuner.encode(model, forms, modality="image", precision="fp32")
    np.testing.assert_allclose(embeddings[:5], np.repeat(embeddings[:1], 5, axis=0), atol=1e-4)
    assert float(embeddings[0] @ embeddings[5]) > 0.99  # the palette keeps the picture, up to quantisation


@pytest.mark.parametrize(
    ("modality", "bad", "expected"),
    [
        ("text", Image.new("RGB", (8, 8)), "text tower.*item 1 is a PIL"),
        ("text", None, "text tower.*item 1 is None"),
        ("text", 3, "text tower.*item 1 is 3"),
        (
            "image",
            "no/such/picture.jpg",
            "image tower.*item 1 is a string that is not an existing image file: 'no/such/picture.jpg'",
        ),
        ("image", "a caption, not a file\x00" * 20, "image tower.*item 1 is a string that is not an existing image file"),
        ("image", None, "image tower.*item 1 is None"),
        ("image", 2.5, "image tower.*item 1 is 2.5"),
        ("image", np.zeros((4, 4, 3), np.float64), "image tower.*item 1 is a float64 array"),
        ("image", torch.zeros(2, 4, 4), r"image tower.*item 1 is a torch.float32 tensor of shape \(2, 4, 4\)"),
        ("image", torch.full((3, 4, 4), 255.0), r"image tower.*item 1 is a float tensor with values in \[255, 255\]"),
    ],
)
def test_bad_items_name_the_tower_and_index(model, modality, bad, expected):
    good = "a cat" if modality == "text" else _picture()
    with pytest.raises(finetuner.DataError, match=expected):
        finetuner.encode(model, [good, bad], modality=modality)


def test_unreadable_image_file_is_named(model, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    with pytest.raises(finetuner.DataError, match=f"item 0: cannot read image file {broken}"):
        model.tower("image").preprocess([broken])


@pytest.mark.parametrize(("modality", "items"), [("text", TEXTS), ("image", [_picture(), _picture((20, 30))])])
def test_bf16_inference_runs_each_tower_on_a_bf16_copy_close_to_autocast(model, modality, items):
    tower = model.eval().tower(modality)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = torch.nn.functional.normalize(tower(tower.preprocess(items)).float(), dim=-1).numpy()
    assert "_bf16_copy" not in tower.__dict__
    copied = finetuner.encode(model, items, modality=modality, precision="bf16", device="cpu")
    _, copy_ = tower.__dict__["_bf16_copy"]
    assert {p.dtype for p in copy_.parameters()} == {torch.bfloat16}
    assert float((autocast * copied).sum(1).min()) > 0.99


def test_transparent_pixels_are_white_as_in_the_vision_plugin(model, tmp_path):
    rgb = np.array(_picture())
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:, : rgb.shape[1] // 2] = 0  # the left half is transparent, its colour hidden
    hidden = rgb.copy()
    hidden[alpha == 0] = 0
    white = rgb.copy()
    white[alpha == 0] = 255
    Image.fromarray(np.dstack([hidden, alpha])).save(tmp_path / "transparent.png")
    grey = Image.fromarray(hidden[:, :, 0]).convert("LA")
    grey.putalpha(Image.fromarray(alpha))
    forms = [
        tmp_path / "transparent.png",  # RGBA
        np.dstack([hidden, alpha]),
        torch.from_numpy(np.dstack([hidden, alpha])).permute(2, 0, 1).contiguous(),
    ]
    embeddings = finetuner.encode(model, [Image.fromarray(white), *forms], modality="image", precision="fp32")
    np.testing.assert_allclose(embeddings[1:], np.repeat(embeddings[:1], len(forms), axis=0), atol=1e-5)
    grey_white = finetuner.encode(model, [Image.fromarray(white[:, :, 0]), grey], modality="image", precision="fp32")
    np.testing.assert_allclose(grey_white[1], grey_white[0], atol=1e-5)  # LA too
    black = finetuner.encode(model, [Image.fromarray(hidden)], modality="image", precision="fp32")
    assert float(black[0] @ embeddings[0]) < 1 - 1e-4  # dropping the alpha channel would have given this
