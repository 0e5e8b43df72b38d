"""The lora option: its settings, flags and YAML keys, and the errors for towers LoRA cannot adapt."""

from __future__ import annotations

import argparse
import json
import sys

import pytest

import finetuner
from finetuner.commands import fit as fit_command
from finetuner.lora import DEFAULTS
from finetuner.training.options import FitOptions
from tests.core.helpers import pairs

pytest.importorskip("finetuner_dummy", reason="the dummy test plugin is not installed")


def test_true_takes_the_defaults_and_a_mapping_overrides_them():
    assert FitOptions(lora=True).lora == DEFAULTS
    assert FitOptions(lora=False).lora is None
    assert FitOptions(lora={"r": 4, "target_modules": "query"}).lora == {**DEFAULTS, "r": 4, "target_modules": ["query"]}


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ({"rank": 4}, "rank"),
        ({"r": 0}, "r"),
        ({"r": True}, "r"),
        ({"alpha": -1}, "alpha"),
        ({"dropout": 1.0}, "dropout"),
        ({"target_modules": []}, "target_modules"),
        ({"target_modules": [3]}, "target_modules"),
        ("yes please", "lora"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(value, named):
    with pytest.raises(finetuner.FinetunerError, match="lora") as error:
        FitOptions(lora=value)
    assert named in str(error.value)


def _parsed(*argv: str) -> dict:
    parser = argparse.ArgumentParser()
    fit_command.add_arguments(parser)
    return fit_command.options_from(parser.parse_args(["--model", "m", "--train-data", "t.csv", *argv]))


def test_the_flag_alone_is_true_and_takes_a_yaml_mapping(tmp_path):
    assert FitOptions(lora=_parsed("--lora")["lora"]).lora == DEFAULTS
    assert FitOptions(lora=_parsed("--lora", "false")["lora"]).lora is None
    given = _parsed("--lora", "{r: 4, alpha: 8, target_modules: [query, value]}")["lora"]
    assert FitOptions(lora=given).lora == {**DEFAULTS, "r": 4, "alpha": 8, "target_modules": ["query", "value"]}
    config = tmp_path / "run.yaml"
    config.write_text("lora:\n  r: 8\n  dropout: 0.0\n")
    assert FitOptions(lora=_parsed("--config", str(config))["lora"]).lora == {**DEFAULTS, "r": 8, "dropout": 0.0}


def test_a_tower_without_linear_layers_is_refused_before_training():
    with pytest.raises(finetuner.OptionError, match=r"no linear layer .*target_modules=.*freeze='text'"):
        finetuner.fit("dummy-text", pairs(8), output_dir=None, batch_size=4, lora=True, verbose=False)


def test_target_modules_that_match_nothing_are_named():
    with pytest.raises(finetuner.OptionError, match=r"target_modules=\['bag\.nope'\] name no linear layer"):
        finetuner.fit("dummy-text", pairs(8), output_dir=None, batch_size=4, lora={"target_modules": ["bag.nope"]})


def test_lora_needs_pretrained_weights_and_a_tower_to_adapt():
    with pytest.raises(finetuner.TrainingError, match="pretrained=False"):
        finetuner.fit("dummy-text", pairs(8), output_dir=None, batch_size=4, lora=True, pretrained=False)
    with pytest.raises(finetuner.OptionError, match="every tower is frozen"):
        finetuner.fit("dummy-text", pairs(8), output_dir=None, batch_size=4, lora=True, freeze=True, output_dim=4)


def test_without_peft_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft raises ImportError
    with pytest.raises(finetuner.FinetunerError, match=r"pip install 'finetuner-core\[lora\]'"):
        finetuner.fit("dummy-text", pairs(8), output_dir=None, batch_size=4, lora=True)


@pytest.mark.parametrize(
    ("field", "value"),
    [("r", 0), ("dropout", 1.5), ("target_modules", {"text": []}), ("base_fingerprint", "")],
)
def test_the_artifact_schema_checks_the_lora_field(tmp_path, field, value):
    model = finetuner.build_model("dummy-text")
    finetuner.save(model, tmp_path / "model")
    path = tmp_path / "model" / "finetuner.json"
    config = json.loads(path.read_text())
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": {"text": ["query"]}, "base_fingerprint": "ab"}
    config["lora"] = {**lora, field: value}
    path.write_text(json.dumps(config))
    with pytest.raises(finetuner.ArtifactError, match=f"field lora.{field} must be"):
        finetuner.load(tmp_path / "model")
