"""Artifacts are a closed world: a schema-checked JSON, paths and links inside the folder, finite weights, the recorded plugin.

Random mutations of the JSON are in test_artifact_fuzz.py.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch

import finetuner
from finetuner import plugins


@pytest.fixture
def path(tmp_path) -> Path:
    return finetuner.save(finetuner.build_model("dummy-text", output_dim=8), tmp_path / "model")


def edit(path: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    """Apply ``change`` to the artifact's JSON (it may edit in place or return a replacement)."""
    config = json.loads((path / "finetuner.json").read_text())
    replaced = change(config)
    (path / "finetuner.json").write_text(json.dumps(config if replaced is None else replaced))


def test_save_records_the_format_version_and_a_missing_one_reads_as_1(path):
    assert json.loads((path / "finetuner.json").read_text())["format_version"] == 1
    edit(path, lambda c: c.__delitem__("format_version"))
    assert finetuner.load(path).output_dim == 8


@pytest.mark.parametrize("version", [2, 0, "1", None, 1.5])
def test_an_unknown_format_version_is_refused_with_the_readable_ones(path, version):
    edit(path, lambda c: c.update(format_version=version))
    with pytest.raises(
        finetuner.ArtifactError, match=rf"format_version {version!r} is not one this release of finetuner reads \(1\)"
    ):
        finetuner.load(path)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda c: [c], "the top level must be an object, got a list"),
        (lambda c: c.__delitem__("sources"), "field sources is missing"),
        (lambda c: c.update(sources={"name": "dummy-text"}), "field sources must be a list, got an object"),
        (lambda c: c.update(sources=[]), "holds a model built by hand"),
        (lambda c: c.update(normalize="yes"), "field normalize must be true or false, got a string"),
        (lambda c: c.update(projection_dim="8"), "field projection_dim must be a positive integer or null"),
        (lambda c: c.update(projection_dim=0), "field projection_dim must be a positive integer or null"),
        (lambda c: c.update(frozen="text"), "field frozen must be a list of strings"),
        (lambda c: c.update(metrics=[1]), "field metrics must be an object"),
        (lambda c: c["sources"].__setitem__(0, "dummy-text"), r"field sources\[0\] must be an object, got a string"),
        (lambda c: c["sources"][0].__delitem__("name"), r"field sources\[0\]\.name is missing"),
        (lambda c: c["sources"][0].update(name=7), r"field sources\[0\]\.name must be a non-empty string, got a number"),
        (lambda c: c["sources"][0].update(options=[]), r"field sources\[0\]\.options must be an object, got a list"),
        (lambda c: c["sources"][0].update(modalities=[]), r"field sources\[0\]\.modalities must be a non-empty list of strings"),
        (lambda c: c["sources"][0].update(files=None), r"field sources\[0\]\.files must be a string, got null"),
        (lambda c: c["sources"][0]["options"].update(pretrained=True), r"sources\[0\]\.options\.pretrained is not allowed"),
        (lambda c: c["sources"][0]["options"].update(name="x"), r"sources\[0\]\.options\.name is not allowed"),
        (lambda c: c["sources"][0].update(modalities=["image"]), r"sources\[0\]\.modalities is \['image'\].*builds \['text'\]"),
        (lambda c: c.update(frozen=["image"]), r"field frozen names \['image'\].*towers are \['text'\]"),
    ],
)
def test_a_json_that_breaks_the_schema_is_refused_naming_the_field(path, change, field):
    edit(path, change)
    with pytest.raises(finetuner.ArtifactError, match=field):
        finetuner.load(path)


@pytest.mark.parametrize("where", ["/etc", "../elsewhere", "backbone-0/../../elsewhere", "", "..\\elsewhere"])
@pytest.mark.parametrize("field", ["files", "options.weights"])
def test_a_path_outside_the_artifact_is_refused(path, where, field):
    def change(config: dict[str, Any]) -> None:
        source = config["sources"][0]
        (source["options"] if field == "options.weights" else source)[field.split(".")[-1]] = where

    edit(path, change)
    with pytest.raises(
        finetuner.ArtifactError, match=rf"field sources\[0\]\.{field} must be a relative path inside the artifact"
    ):
        finetuner.load(path)


def test_a_link_that_leaves_the_artifact_is_refused(path, tmp_path):
    outside = tmp_path / "outside"
    shutil.copytree(path / "backbone-0", outside)
    shutil.rmtree(path / "backbone-0")
    (path / "backbone-0").symlink_to(outside, target_is_directory=True)
    with pytest.raises(
        finetuner.ArtifactError, match=rf"sources\[0\]\.files \('backbone-0'\) leads to {outside}, outside the artifact folder"
    ):
        finetuner.load(path)
    (path / "backbone-0").unlink()
    outside.rename(path / "backbone-0")
    (tmp_path / "secret.json").write_text("{}")
    (path / "backbone-0" / "tokenizer.json").symlink_to(tmp_path / "secret.json")
    with pytest.raises(finetuner.ArtifactError, match=r"backbone-0/tokenizer\.json is a link to .*secret\.json, outside"):
        finetuner.load(path)


def test_links_that_stay_inside_and_a_linked_artifact_folder_load(path, tmp_path):
    (path / "backbone-0").rename(path / "files")
    (path / "backbone-0").symlink_to("files", target_is_directory=True)
    (tmp_path / "link").symlink_to(path, target_is_directory=True)
    assert finetuner.load(tmp_path / "link").output_dim == 8


def test_a_weights_option_inside_the_artifact_is_passed_resolved(path, monkeypatch):
    import finetuner.models.build as build

    seen: dict[str, Any] = {}
    real = build.build_towers

    def spy(name: str, **options: Any) -> Any:
        seen.update(options)
        return real(name, **{k: v for k, v in options.items() if k != "weights"})

    monkeypatch.setattr(build, "build_towers", spy)
    edit(path, lambda c: c["sources"][0]["options"].update(weights="backbone-0/extra.safetensors"))
    finetuner.load(path)
    assert seen["weights"] == str((path / "backbone-0" / "extra.safetensors").resolve())


@pytest.mark.parametrize("name", ["PYTORCH_MODEL.BIN", "weights.Pt", "x.PKL"])
def test_the_pickle_check_ignores_case(path, name):
    (path / "backbone-0" / name).write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(finetuner.ArtifactError, match=rf"pickle files \(backbone-0/{name}\)"):
        finetuner.load(path)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_weights_that_are_not_finite_are_refused_naming_the_tensor(path, value):
    model = finetuner.load(path)
    with torch.no_grad():
        model.projections["text"].weight[3, 1] = value
    safetensors.torch.save_model(model, str(path / "model.safetensors"))
    with pytest.raises(finetuner.ArtifactError, match=r"not finite: tensor 'projections\.text\.weight'"):
        finetuner.load(path)


class _Impostor:
    def __init__(self) -> None:
        self.built: list[str] = []

    @finetuner.hookimpl
    def finetuner_register_backbones(self, register):
        register(finetuner.BackboneSpec("dummy-text", "text-to-text", 16, "x", "impostor", build=self.build))

    def build(self, **options: Any) -> Any:
        self.built.append("dummy-text")
        raise AssertionError("the impostor's builder must not run")


def test_a_name_now_held_by_another_plugin_is_refused_before_building(path, monkeypatch):
    monkeypatch.setenv("FINETUNER_DISABLE_PLUGINS", "dummy")
    plugins.reset()
    impostor = _Impostor()
    plugins.register_plugin(impostor, "impostor")
    with pytest.raises(
        finetuner.ArtifactError, match=r"made with plugin 'dummy', but here that name belongs to plugin 'impostor'"
    ):
        finetuner.load(path)
    assert impostor.built == []


def test_a_recorded_plugin_that_is_not_the_names_is_refused(path):
    edit(path, lambda c: c["sources"][0].update(plugin="vision"))
    with pytest.raises(finetuner.ArtifactError, match=r"made with plugin 'vision', but here that name belongs to plugin 'dummy'"):
        finetuner.load(path)


def test_a_backbone_that_is_not_installed_is_named_with_its_plugin(path):
    edit(path, lambda c: c["sources"][0].update(name="dummy-gone"))
    with pytest.raises(
        finetuner.ArtifactError, match=r"'dummy-gone' \(sources\[0\]\) was made with plugin 'dummy', and here UnknownNameError"
    ):
        finetuner.load(path)


@pytest.mark.parametrize("where", ["../model.safetensors", "/etc/hostname"])
def test_an_onnx_graph_outside_the_export_folder_is_refused(path, where):
    pytest.importorskip("onnxruntime", reason="the onnx extra (onnx, onnxruntime) is not installed")
    finetuner.export_onnx(path)
    index = path / "onnx" / "towers.json"
    towers = json.loads(index.read_text())
    towers["text"]["file"] = where
    index.write_text(json.dumps(towers))
    with pytest.raises(finetuner.ArtifactError, match=r"towers\.json: field text\.file must be a relative path inside"):
        finetuner.encode(path, ["a text"], backend="onnx")
