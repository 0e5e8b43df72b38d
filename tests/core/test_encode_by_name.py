"""encode() takes a model, an artifact folder, or a backbone name; anything else says which of those to pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import finetuner

TEXTS = ["a query", "a longer document about something"]


def test_a_backbone_name_is_built_and_encodes_like_build_model():
    torch.manual_seed(0)
    by_name = finetuner.encode("dummy-text", TEXTS)
    torch.manual_seed(0)
    np.testing.assert_array_equal(by_name, finetuner.encode(finetuner.build_model("dummy-text"), TEXTS))
    assert finetuner.encode("dummy-txt", TEXTS).shape == (2, 16)  # an alias
    assert finetuner.encode("dummy-text+dummy-image", TEXTS, modality="text").shape == (2, 16)


def test_an_artifact_folder_still_loads(tmp_path):
    model = finetuner.build_model("dummy-text", output_dim=8)
    finetuner.save(model, tmp_path / "model")
    np.testing.assert_allclose(finetuner.encode(tmp_path / "model", TEXTS), finetuner.encode(model, TEXTS), atol=1e-6)
    np.testing.assert_allclose(finetuner.encode(str(tmp_path / "model"), TEXTS), finetuner.encode(model, TEXTS), atol=1e-6)


def test_neither_a_name_nor_an_artifact_says_to_build_the_model_or_pass_a_folder(tmp_path):
    with pytest.raises(finetuner.UnknownNameError) as error:
        finetuner.encode("dummy-txet", TEXTS)
    message = str(error.value)
    assert "Did you mean: dummy-txt, dummy-text" in message and "is no artifact folder either" in message
    assert "finetuner.build_model(NAME, ...)" in message and "finetuner.save() or fit() wrote" in message
    (tmp_path / "mine").mkdir()
    for folder in (tmp_path / "mine", str(tmp_path / "mine")):
        with pytest.raises(
            finetuner.ArtifactError, match=r"mine is not a finetuner artifact: finetuner\.json is missing\. Pass the folder"
        ):
            finetuner.encode(folder, TEXTS)


def test_a_path_that_does_not_exist_is_named_without_the_list_of_models(tmp_path, capsys):
    from finetuner.cli import main

    missing = tmp_path / "run" / "model"
    for path in (str(missing), "./run/model"):
        with pytest.raises(finetuner.ArtifactError, match="the path does not exist") as error:
            finetuner.encode(path, TEXTS)
        assert f"no artifact folder at {path}" in str(error.value) and "dummy-text" not in str(error.value)
    (tmp_path / "texts.txt").write_text("a query\n")
    assert main(["encode", str(missing), str(tmp_path / "texts.txt"), "-o", str(tmp_path / "out.npy")]) != 0
    err = capsys.readouterr().err
    assert f"no artifact folder at {missing}" in err and "dummy-text" not in err
