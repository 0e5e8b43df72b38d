"""Nothing of the user's is ever deleted: save(), fit()'s model/ and checkpoint/, and ONNX exports
replace only what finetuner wrote (or an empty folder) unless told ``overwrite=True``."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import finetuner
from finetuner.cli import main
from tests.core.helpers import topic_pairs

FAST = {"epochs": 1, "batch_size": 4, "verbose": False}


def user_package(path: Path) -> dict[str, str]:
    """A folder of the user's own (a Python package) at ``path``; returns its files' contents."""
    path.mkdir(parents=True)
    files = {"__init__.py": "VERSION = 1\n", "weights.txt": "precious\n"}
    for name, text in files.items():
        (path / name).write_text(text)
    return files


def contents(path: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in path.iterdir()}


@pytest.fixture(scope="module")
def model() -> finetuner.EmbeddingModel:
    return finetuner.build_model("dummy-text", output_dim=8)


def test_save_refuses_a_folder_of_the_users_own(tmp_path, model):
    files = user_package(tmp_path / "model")
    with pytest.raises(finetuner.ArtifactError, match=rf"{tmp_path / 'model'} is a folder with other content.*overwrite=True"):
        finetuner.save(model, tmp_path / "model")
    assert contents(tmp_path / "model") == files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging folder left beside it


def test_save_refuses_a_file(tmp_path, model):
    (tmp_path / "model").write_text("notes")
    with pytest.raises(finetuner.ArtifactError, match=rf"{tmp_path / 'model'} is a file.*overwrite=True"):
        finetuner.save(model, tmp_path / "model")
    assert (tmp_path / "model").read_text() == "notes"


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_overwrite_true_replaces_it(tmp_path, model, kind):
    if kind == "file":
        (tmp_path / "model").write_text("notes")
    else:
        user_package(tmp_path / "model")
    finetuner.save(model, tmp_path / "model", overwrite=True)
    assert finetuner.load(tmp_path / "model").output_dim == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_an_empty_folder_or_an_artifact_is_replaced(tmp_path, model):
    (tmp_path / "model").mkdir()
    finetuner.save(model, tmp_path / "model")
    finetuner.save(model, tmp_path / "model")  # over the artifact just written
    assert finetuner.load(tmp_path / "model").output_dim == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_link_is_replaced_never_what_it_points_to(tmp_path, model):
    files = user_package(tmp_path / "mine")
    (tmp_path / "model").symlink_to(tmp_path / "mine")
    with pytest.raises(finetuner.ArtifactError, match="overwrite=True"):
        finetuner.save(model, tmp_path / "model")
    finetuner.save(model, tmp_path / "model", overwrite=True)
    assert not (tmp_path / "model").is_symlink() and finetuner.load(tmp_path / "model").output_dim == 8
    assert contents(tmp_path / "mine") == files


@pytest.mark.parametrize("target", [".", "..", "sub/.."])
def test_the_current_folder_is_refused_clearly(tmp_path, model, monkeypatch, target):
    (tmp_path / "work" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work")
    for overwrite in (False, True):
        with pytest.raises(finetuner.ArtifactError, match="is the current folder or holds it; name a new folder"):
            finetuner.save(model, target, overwrite=overwrite)
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["sub"]


@pytest.mark.parametrize("below", ["model", "a/b/model"])
def test_a_parent_that_is_a_file_is_named(tmp_path, model, below):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(finetuner.ArtifactError, match=rf"{tmp_path / 'notes.txt'} is a file, not a folder"):
        finetuner.save(model, tmp_path / "notes.txt" / below)
    assert (tmp_path / "notes.txt").read_text() == "x"


def test_an_artifact_follows_the_umask(tmp_path, model):
    previous = os.umask(0o022)
    try:
        finetuner.save(model, tmp_path / "model")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755


def test_a_save_killed_between_its_renames_still_loads(tmp_path, model):
    finetuner.save(model, tmp_path / "model")
    os.replace(tmp_path / "model", tmp_path / ".model.old")  # the previous one moved aside, the new one never moved in
    assert finetuner.load(tmp_path / "model").output_dim == 8
    finetuner.save(model, tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


@pytest.mark.parametrize("folder", ["model", "checkpoint"])
def test_fit_refuses_a_users_folder_before_training(tmp_path, folder):
    out = tmp_path / "run"
    files = user_package(out / folder)
    with pytest.raises(finetuner.ArtifactError, match=rf"{out / folder} is a folder with other content.*overwrite=True"):
        finetuner.fit("dummy-text", topic_pairs(8), output_dir=out, checkpoint_every_steps=1, **FAST)
    assert sorted(p.name for p in out.iterdir()) == [folder] and contents(out / folder) == files
    finetuner.fit("dummy-text", topic_pairs(8), output_dir=out, checkpoint_every_steps=1, overwrite=True, **FAST)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint", "model"]
    assert finetuner.load(out / "model").output_dim == 16


def test_fit_from_the_command_line_says_overwrite(tmp_path, capsys):
    (tmp_path / "train.csv").write_text("query,document\n" + "".join(f"q {i},d {i}\n" for i in range(8)))
    user_package(tmp_path / "run" / "model")
    argv = ["fit", "--model", "dummy-text", "--train-data", str(tmp_path / "train.csv"), "--output-dir", str(tmp_path / "run")]
    argv += ["--batch-size", "4"]
    assert main([*argv, "--quiet"]) == 1
    assert "overwrite=True" in capsys.readouterr().err
    assert main([*argv, "--quiet", "--overwrite"]) == 0
    assert finetuner.load(tmp_path / "run" / "model").output_dim == 16


def test_an_onnx_export_refuses_a_users_folder(tmp_path, model):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    pytest.importorskip("onnx", reason="the onnx extra is not installed")
    from finetuner.export import export_onnx

    files = user_package(tmp_path / "graphs")
    with pytest.raises(finetuner.ArtifactError, match=r"is a folder with other content, not an ONNX export.*overwrite=True"):
        export_onnx(model, tmp_path / "graphs")
    assert contents(tmp_path / "graphs") == files
    export_onnx(model, tmp_path / "graphs", overwrite=True)
    export_onnx(model, tmp_path / "graphs")  # an export replaces an export
    assert (tmp_path / "graphs" / "towers.json").is_file()


def test_a_model_built_by_hand_trains_into_an_output_dir_and_load_says_why_it_cannot_rebuild(tmp_path):
    model = finetuner.EmbeddingModel({"text": _HandTower()})
    tuned = finetuner.fit(model, topic_pairs(40), epochs=1, batch_size=8, output_dir=tmp_path / "run", verbose=False)
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file() and tuned is model
    with pytest.raises(finetuner.ArtifactError, match="built by hand"):
        finetuner.load(tmp_path / "run" / "model")


class _HandTower(finetuner.Tower):
    """Bag of characters: a tower no plugin knows."""

    modality = "text"
    output_dim = 8

    def __init__(self) -> None:
        import torch

        super().__init__()
        self.embedding = torch.nn.EmbeddingBag(128, 8)

    def preprocess(self, items):
        import torch

        ids = [torch.tensor([ord(c) % 128 for c in text] or [0]) for text in items]
        offsets = torch.tensor([0, *torch.cumsum(torch.tensor([len(i) for i in ids]), 0)[:-1].tolist()])
        return {"ids": torch.cat(ids), "offsets": offsets}

    def forward(self, features):
        return self.embedding(features["ids"], features["offsets"])
