"""save_files, offline rebuild from local_dir, and finetuner.save / finetuner.load round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import finetuner
from tests.hubcache import use_hf_home

NAME = "openai/clip-vit-base-patch32"
TEXTS = ["a photo of a cat", "a red car"]


def _images() -> list:
    rng = np.random.default_rng(2)
    return [Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)), torch.rand(3, 32, 32)]


def test_save_files_is_enough_to_rebuild_offline(clip_cache, tmp_path, monkeypatch):
    model = finetuner.build_model(NAME, max_length=16)
    for modality in model.modalities:
        model.tower(modality).save_files(tmp_path)
    assert (tmp_path / "config.json").is_file() and (tmp_path / "preprocessor_config.json").is_file()
    assert (tmp_path / "tokenizer.json").is_file() or (tmp_path / "vocab.json").is_file()

    use_hf_home(monkeypatch, tmp_path / "no_cache")
    rebuilt = finetuner.build_model(NAME, pretrained=False, local_dir=str(tmp_path), max_length=16)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
    rebuilt.load_state_dict(model.state_dict())
    for modality, items in (("text", TEXTS), ("image", _images())):
        before = model.tower(modality).preprocess(items)
        after = rebuilt.tower(modality).preprocess(items)
        assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_rebuild_from_a_folder_without_config_is_not_available(clip_cache, tmp_path):
    finetuner.build_model(NAME).tower("text").tokenizer.save_pretrained(tmp_path)
    with pytest.raises(finetuner.ModelNotAvailableError, match="config.json is missing"):
        finetuner.build_model(NAME, pretrained=False, local_dir=str(tmp_path))


def test_save_and_load_round_trip_offline(clip_cache, tmp_path, monkeypatch):
    model = finetuner.build_model(NAME, max_length=16)
    with torch.no_grad():
        model.logit_scale.fill_(4.2)  # as if training had moved the temperature
    finetuner.save(model, tmp_path / "artifact")
    assert not any(p.suffix in {".bin", ".pt", ".pth"} for p in (tmp_path / "artifact").rglob("*"))

    use_hf_home(monkeypatch, tmp_path / "no_cache")  # loading needs nothing but the artifact
    loaded = finetuner.load(tmp_path / "artifact")
    assert loaded.task == "text-to-image" and loaded.output_dim == 512
    assert loaded.tower("text").max_length == 16
    assert float(loaded.logit_scale.detach()) == pytest.approx(4.2)
    for modality, items in (("text", TEXTS), ("image", _images())):
        expected = finetuner.encode(model, items, modality=modality, precision="fp32")
        np.testing.assert_allclose(finetuner.encode(loaded, items, modality=modality, precision="fp32"), expected, atol=1e-6)
