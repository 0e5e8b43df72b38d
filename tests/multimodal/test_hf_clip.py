"""``hf-clip:<model id or folder>``: transformers CLIP, SigLIP (2) and ALIGN dual encoders built offline, split into two towers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel, SiglipModel

import finetuner
from finetuner.losses import default_loss
from tests.hubcache import use_hf_home
from tests.multimodal.tiny_clip import write_tiny_clip
from tests.multimodal.tiny_dual import LOGIT_BIAS, LOGIT_SCALE, MAX_POSITIONS, write_tiny_align, write_tiny_siglip

TEXTS = ["a photo of a cat", "a red car", "dog"]


def _images() -> list:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (40, 36, 3), dtype=np.uint8), torch.rand(3, 32, 48, generator=torch.Generator().manual_seed(3))]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Tiny random models in save_pretrained folders: SigLIP, SigLIP 2 (NaFlex), CLIP and ALIGN."""
    root = tmp_path_factory.mktemp("dual")
    return {
        "siglip": write_tiny_siglip(root / "siglip"),
        "siglip2": write_tiny_siglip(root / "siglip2", model_type="siglip2"),
        "clip": write_tiny_clip(root / "hub", "org/tiny-clip"),  # a snapshot folder is a save_pretrained folder
        "align": write_tiny_align(root / "align"),
    }


def _encode(model: finetuner.EmbeddingModel) -> dict[str, np.ndarray]:
    return {
        m: finetuner.encode(model, items, modality=m, precision="fp32") for m, items in (("text", TEXTS), ("image", _images()))
    }


@pytest.mark.parametrize(("family", "dim"), [("siglip", 48), ("siglip2", 48), ("clip", 512), ("align", 80)])
def test_towers_give_the_models_own_text_and_image_features(folders, family, dim):
    model = finetuner.build_model(f"hf-clip:{folders[family]}")
    reference = AutoModel.from_pretrained(folders[family]).eval()
    assert model.task == "text-to-image"
    assert model.tower("text").output_dim == model.tower("image").output_dim == model.output_dim == dim
    texts, pixels = model.tower("text").preprocess(TEXTS), model.tower("image").preprocess(_images())
    with torch.no_grad():
        torch.testing.assert_close(model.tower("text")(texts), reference.get_text_features(**texts).pooler_output)
        torch.testing.assert_close(model.tower("image")(pixels), reference.get_image_features(**pixels).pooler_output)
    embeddings = _encode(model)
    assert embeddings["text"].shape == (3, dim) and embeddings["image"].shape == (2, dim)


def test_siglip_keeps_its_conventions_and_trains_with_its_loss_by_default(folders):
    model = finetuner.build_model(f"hf-clip:{folders['siglip']}")
    reference = SiglipModel.from_pretrained(folders["siglip"])
    assert float(model.logit_scale.detach()) == pytest.approx(LOGIT_SCALE)
    assert float(model.logit_bias.detach()) == float(reference.logit_bias.detach()) == LOGIT_BIAS  # fine-tuning starts from it
    # every weight is held once: the towers, the temperature and the bias are the model
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())
    # SigLIP was trained on texts padded to the full length, without an attention mask
    features = model.tower("text").preprocess(TEXTS)
    assert list(features) == ["input_ids"] and features["input_ids"].shape == (3, MAX_POSITIONS)
    assert model.tower("image").preprocess(_images())["pixel_values"].shape == (2, 3, 32, 32)
    assert default_loss("pairs", model.task, model) == "SigLIPLoss"
    naflex = finetuner.build_model(f"hf-clip:{folders['siglip2']}", pretrained=False)
    # at random init: SigLIP's initial temperature and bias, not transformers' zeros
    assert (float(naflex.logit_scale.detach()), float(naflex.logit_bias.detach())) == pytest.approx((math.log(10), -10))
    assert set(naflex.tower("image").preprocess(_images())) == {"pixel_values", "pixel_attention_mask", "spatial_shapes"}
    assert default_loss("pairs", naflex.task, naflex) == "SigLIPLoss"


def test_clip_and_align_keep_their_padding_and_the_clip_loss(folders):
    clip = finetuner.build_model(f"hf-clip:{folders['clip']}")
    features = clip.tower("text").preprocess(TEXTS)
    assert set(features) == {"input_ids", "attention_mask"} and features["input_ids"].shape[1] < 77  # the longest text
    assert default_loss("pairs", clip.task, clip) == "ClipLoss"
    align = finetuner.build_model(f"hf-clip:{folders['align']}")
    features = align.tower("text").preprocess(TEXTS)
    assert set(features) == {"input_ids", "attention_mask", "token_type_ids"} and features["input_ids"].shape == (3, 64)
    assert default_loss("pairs", align.task, align) == "ClipLoss"
    assert float(align.logit_scale.detach()) == pytest.approx(0.0)  # log(1 / ALIGN's initial temperature of 1)


@pytest.mark.parametrize("family", ["siglip", "siglip2", "clip", "align"])
def test_every_weight_gets_a_gradient_as_ddp_requires(folders, family):
    model = finetuner.build_model(f"hf-clip:{folders[family]}")
    model.train()
    texts = model(model.tower("text").preprocess(TEXTS[:2]), "text")
    images = model(model.tower("image").preprocess(_images()), "image")
    (texts @ images.T).sum().backward()
    assert [
        n for n, p in model.named_parameters() if n not in ("logit_scale", "logit_bias") and p.grad is None
    ] == []  # the loss uses those two


@pytest.mark.parametrize("family", ["siglip", "clip"])
def test_save_and_load_give_equal_embeddings_offline(folders, family, tmp_path, monkeypatch):
    model = finetuner.build_model(f"hf-clip:{folders[family]}", max_length=12)
    finetuner.save(model, tmp_path / "artifact")
    use_hf_home(monkeypatch, tmp_path / "no_cache")
    loaded = finetuner.load(tmp_path / "artifact")
    assert loaded.tower("text").max_length == 12
    for modality, expected in _encode(model).items():
        np.testing.assert_allclose(_encode(loaded)[modality], expected, atol=1e-6)


def test_artifact_loads_when_the_source_folder_is_gone(folders, tmp_path, monkeypatch):
    source = tmp_path / "moved"
    write_tiny_siglip(source)
    model = finetuner.build_model(f"hf-clip:{source}")
    finetuner.save(model, tmp_path / "artifact")
    for path in source.iterdir():
        path.unlink()
    source.rmdir()
    use_hf_home(monkeypatch, tmp_path / "no_cache")
    loaded = finetuner.load(tmp_path / "artifact")
    np.testing.assert_allclose(_encode(loaded)["text"], _encode(model)["text"], atol=1e-6)


def test_missing_files_and_other_models_are_refused(folders, tmp_path, empty_cache):
    with pytest.raises(finetuner.ModelNotAvailableError, match="google/siglip-base-patch16-224.*not available offline"):
        finetuner.build_model("hf-clip:google/siglip-base-patch16-224")
    with pytest.raises(finetuner.ModelNotAvailableError, match="there is no folder"):
        finetuner.build_model(f"hf-clip:{tmp_path / 'absent'}")
    with pytest.raises(finetuner.UnknownNameError, match="hf-clip:<model id or folder>"):
        finetuner.get_spec("hf-clip:")
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(finetuner.UnknownNameError, match="hf-clip model type 'bert'.*align, clip, siglip, siglip2"):
        finetuner.get_spec(f"hf-clip:{bert}")
    unprocessed = tmp_path / "no_processor"
    write_tiny_siglip(unprocessed, weights=False)
    (unprocessed / "preprocessor_config.json").unlink()
    with pytest.raises(finetuner.ModelNotAvailableError, match="no preprocessor_config.json in the folder"):
        finetuner.build_model(f"hf-clip:{unprocessed}", pretrained=False)


def test_siglip_trains_with_its_own_loss(folders):
    rng = np.random.default_rng(4)
    data = [(f"{text} {i}", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for i, text in enumerate(TEXTS * 2)]
    model = finetuner.build_model(f"hf-clip:{folders['siglip']}")
    before = model.tower("image").vision_model.embeddings.patch_embedding.weight.detach().clone()
    tuned = finetuner.fit(
        model, data, output_dir=None, loss="siglip", epochs=1, batch_size=3, precision="fp32", device="cpu", verbose=False
    )
    assert [h["loss"] for h in tuned.history if "loss" in h] and all(np.isfinite(h["loss"]) for h in tuned.history if "loss" in h)
    assert not torch.equal(tuned.tower("image").vision_model.embeddings.patch_embedding.weight, before)


def test_a_siglip_artifact_keeps_its_bias_and_one_saved_before_finetuner_kept_it_still_loads(folders, tmp_path):
    from safetensors.torch import load_file, save_file

    model = finetuner.build_model(f"hf-clip:{folders['siglip']}")
    with torch.no_grad():
        model.logit_bias.fill_(-3.25)  # as if training had moved it
    artifact = finetuner.save(model, tmp_path / "artifact")
    assert float(finetuner.load(artifact).logit_bias.detach()) == -3.25
    weights = load_file(artifact / "model.safetensors")
    del weights["logit_bias"]  # what an artifact written before finetuner kept the bias holds
    save_file(weights, artifact / "model.safetensors")
    older = finetuner.load(artifact)
    assert older.logit_bias is None
    ours = finetuner.encode(model, TEXTS, modality="text", precision="fp32")
    np.testing.assert_allclose(finetuner.encode(older, TEXTS, modality="text", precision="fp32"), ours, atol=1e-6)
