"""``open_clip/<architecture>[:<tag>]``: open_clip models built offline (random init, or a tag's weights from the cache)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from PIL import Image

open_clip = pytest.importorskip("open_clip", reason="open-clip-torch (finetuner-multimodal[open_clip]) is not installed")

import finetuner  # noqa: E402
from finetuner.losses import default_loss  # noqa: E402
from tests.hubcache import hub_snapshot, use_hf_home  # noqa: E402
from tests.multimodal.tiny_open_clip import register_tiny  # noqa: E402

TEXTS = ["a photo of a cat", "a red car", "dog"]


@pytest.fixture(autouse=True)
def tiny_architectures(monkeypatch):
    register_tiny(monkeypatch)


def _images() -> list:
    rng = np.random.default_rng(5)
    return [Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)), rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)]


def _encode(model: finetuner.EmbeddingModel) -> dict[str, np.ndarray]:
    return {
        m: finetuner.encode(model, items, modality=m, precision="fp32") for m, items in (("text", TEXTS), ("image", _images()))
    }


def test_random_init_builds_offline_into_one_space(empty_cache):
    spec = finetuner.get_spec("open_clip/Tiny-test")
    assert (spec.output_dim, spec.task, spec.architecture, spec.plugin) == (24, "text-to-image", "transformer", "multimodal")
    model = finetuner.build_model("open_clip/Tiny-test", pretrained=False)
    reference = open_clip.create_model("Tiny-test")
    assert model.tower("text").output_dim == model.tower("image").output_dim == model.output_dim == 24
    # every weight is held once: the towers plus the temperature are the open_clip model
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())
    assert model.tower("text").preprocess(TEXTS)["tokens"].shape == (3, 16)  # open_clip's own BPE, offline
    embeddings = _encode(model)
    assert embeddings["text"].shape == (3, 24) and embeddings["image"].shape == (2, 24)
    assert default_loss("pairs", model.task, model) == "ClipLoss"


def test_every_weight_gets_a_gradient_as_ddp_requires(empty_cache):
    model = finetuner.build_model("open_clip/Tiny-test", pretrained=False)
    texts = model(model.tower("text").preprocess(TEXTS[:2]), "text")
    images = model(model.tower("image").preprocess(_images()), "image")
    (texts @ images.T).sum().backward()
    assert [
        n for n, p in model.named_parameters() if n not in ("logit_scale", "logit_bias") and p.grad is None
    ] == []  # the loss uses those two


def test_a_sigmoid_trained_architecture_trains_with_the_siglip_loss(empty_cache):
    model = finetuner.build_model("open_clip/Tiny-sigmoid-test", pretrained=False)
    assert float(model.logit_scale.detach()) == pytest.approx(math.log(10.0))
    assert float(model.logit_bias.detach()) == pytest.approx(-10.0)  # the architecture's initial bias
    assert default_loss("pairs", model.task, model) == "SigLIPLoss"


def test_a_tags_weights_and_preprocessing_come_from_the_cache(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    reference = open_clip.create_model("Tiny-test")
    save_file(reference.state_dict(), hub_snapshot(tmp_path, "test-org/tiny-open-clip") / "open_clip_model.safetensors")
    use_hf_home(monkeypatch, tmp_path)
    model = finetuner.build_model("open_clip/Tiny-test:tiny")
    reference, _, preprocess = open_clip.create_model_and_transforms("Tiny-test", pretrained="tiny")
    tokenizer = open_clip.get_tokenizer("Tiny-test")
    with torch.no_grad():
        texts = torch.nn.functional.normalize(reference.encode_text(tokenizer(TEXTS)), dim=-1)
        images = torch.nn.functional.normalize(reference.encode_image(torch.stack([preprocess(_images()[0])])), dim=-1)
    np.testing.assert_allclose(_encode(model)["text"], texts.numpy(), atol=1e-5)
    np.testing.assert_allclose(
        finetuner.encode(model, _images()[:1], modality="image", precision="fp32"), images.numpy(), atol=1e-5
    )
    assert float(model.logit_scale.detach()) == pytest.approx(float(reference.logit_scale.detach()))


def test_a_tag_missing_from_the_cache_names_the_way_out(empty_cache):
    with pytest.raises(finetuner.ModelNotAvailableError) as info:
        finetuner.build_model("open_clip/Tiny-test:tiny")
    message = str(info.value)
    assert "test-org/tiny-open-clip" in message and str(empty_cache) in message and "pretrained=False" in message
    with pytest.raises(finetuner.ModelNotAvailableError, match="names no pretrained tag.*open_clip/Tiny-test:tiny"):
        finetuner.build_model("open_clip/Tiny-test")


def test_save_and_load_give_equal_embeddings_offline(empty_cache, tmp_path):
    model = finetuner.build_model("open_clip/Tiny-test", pretrained=False)
    finetuner.save(model, tmp_path / "artifact")
    assert (tmp_path / "artifact" / "backbone-0" / "open_clip_config.json").is_file()
    loaded = finetuner.load(tmp_path / "artifact")
    for modality, expected in _encode(model).items():
        np.testing.assert_allclose(_encode(loaded)[modality], expected, atol=1e-6)


def test_unknown_architectures_and_tags_list_close_matches():
    with pytest.raises(finetuner.UnknownNameError) as info:
        finetuner.get_spec("open_clip/ViT-B-33")
    assert "open_clip/ViT-B-32" in info.value.close_matches
    with pytest.raises(finetuner.UnknownNameError) as info:
        finetuner.get_spec("open_clip/ViT-B-32:laion2b_s34b")
    assert "laion2b_s34b_b79k" in info.value.close_matches
    with pytest.raises(finetuner.UnknownNameError, match="pretrained=False"):
        finetuner.get_spec("open_clip/Tiny-sigmoid-test:tiny")  # it has no tags


def test_without_open_clip_installed_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)  # import open_clip now raises ImportError
    extra = r"pip install 'finetuner-multimodal\[open_clip\]'"
    with pytest.raises(finetuner.ModelNotAvailableError, match=extra):
        finetuner.get_spec("open_clip/ViT-S-32")
    with pytest.raises(finetuner.ModelNotAvailableError, match=extra):
        finetuner.build_model("open_clip/ViT-B-32:laion2b_s34b_b79k", pretrained=False)  # listed, so it resolves
