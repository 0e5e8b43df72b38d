"""When things go wrong: each case of the README table, end to end through the public API.

Kill -9 and resume is in test_resume.py; reader-level CSV errors are in test_data_readers.py,
bad fit() options in test_fit.py, plugin faults in test_plugins.py, fuzzing in test_data_fuzz.py and
test_options_fuzz.py, the command line's errors and Ctrl-C in test_cli.py.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import SafetensorError

import finetuner
from finetuner.training.callbacks import Callback
from finetuner.training.checkpoint import load_checkpoint
from tests.core.helpers import quiet_fit


def pairs(n: int = 24) -> list[tuple[str, str]]:
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    return [(f"{words[i % 6]} question {i}", f"notes on {words[i % 6][::-1]} {i}") for i in range(n)]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def disk_full(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# --- unknown names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "close", "valid"),
    [
        (
            lambda: quiet_fit("dummy-txt2", pairs(), batch_size=4),
            "dummy-text",
            "finetuner models",
        ),
        (lambda: finetuner.list_models(task="text-to-imag"), "text-to-image", "image-to-image, text-to-image, text-to-text"),
        (
            lambda: quiet_fit("dummy-text", pairs(), batch_size=4, loss="MultipleNegativeRankingLoss"),
            "MultipleNegativesRankingLoss",
            "CoSENTLoss",
        ),
        (
            lambda: quiet_fit(
                "dummy-text",
                [(t, i % 3) for i, (t, _) in enumerate(pairs())],
                kind="labeled",
                batch_size=6,
                samples_per_class=2,
                miner="MultiSimilarityMine",
            ),
            "MultiSimilarityMiner",
            "TripletMarginMiner",
        ),
        (
            lambda: quiet_fit("dummy-text", pairs(), batch_size=4, optimizer="AdamV"),
            "AdamW",
            "SGD",
        ),
        (
            lambda: quiet_fit("dummy-text", pairs(), batch_size=4, scheduler="cosin"),
            "cosine",
            "constant, cosine, linear",
        ),
    ],
    ids=["model", "task", "loss", "miner", "optimizer", "scheduler"],
)
def test_unknown_names_list_close_matches_and_the_valid_names(call, close, valid):
    with pytest.raises(finetuner.UnknownNameError) as error:
        call()
    message = str(error.value)
    assert close in message.split("Did you mean:")[1].split("?")[0]
    assert valid in message


# --- data problems surface from fit() before anything is built or trained ----------------------


@pytest.mark.parametrize(
    ("content", "options", "pattern"),
    [
        (None, {}, r"data file not found: .*train\.csv"),
        (b"\n\n", {}, r"train\.csv is empty"),
        (b"query,document\nq1,d1\nq2,d2,d3\n", {}, r"train\.csv, line 3: 3 fields, expected 2"),
        (
            b"query,document\nq1,d1\n",
            {"columns": {"query": "question"}},
            r"no such column in .*train\.csv; available: 'query', 'document'",
        ),
        (b"a,b,score\nx,y,0.5\nx,z,high\n", {}, r"train\.csv, line 3: score 'high'"),
        (b"query,document\nq1,d1\nq\xff2,d2\n", {}, r"train\.csv, line 3: bytes b'\\xff' are not valid utf-8"),
    ],
    ids=["missing", "empty", "wrong-field-count", "unknown-column", "non-numeric-score", "undecodable"],
)
def test_csv_problems_stop_fit_before_training(tmp_path, content, options, pattern):
    csv = tmp_path / "train.csv"
    if content is not None:
        csv.write_bytes(content)
    with pytest.raises(finetuner.DataError, match=pattern):
        quiet_fit("dummy-text", csv, output_dir=tmp_path / "run", batch_size=2, **options)
    assert not (tmp_path / "run").exists()


def test_a_label_with_one_item_is_named_when_fit_starts(tmp_path):
    csv = tmp_path / "labels.csv"
    rows = [f"item {i},{'common' if i % 2 else 'other'}" for i in range(16)] + ["lonely item,singleton"]
    csv.write_text("item,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(finetuner.DataError, match=r"'singleton' \(1 item\)"):
        quiet_fit("dummy-text", csv, batch_size=4, samples_per_class=2, output_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def image_captions(tmp_path: Path, broken: str) -> Path:
    rng = np.random.default_rng(0)
    lines = []
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / f"img{i}.png")
        lines.append(f"img{i}.png,picture number {i}")
    (tmp_path / broken).write_bytes(b"this is not a PNG")
    lines.append(f"{broken},a broken picture")
    csv = tmp_path / "captions.csv"
    csv.write_text("image,caption\n" + "\n".join(lines) + "\n")
    return csv


def test_a_file_that_is_not_an_image_is_named_by_fit_and_encode(tmp_path):
    csv = image_captions(tmp_path, "broken.png")
    with pytest.raises(finetuner.DataError, match=r"broken\.png.*not a readable image"):
        quiet_fit("dummy-text+dummy-image", csv, batch_size=9, output_dim=8)
    with pytest.raises(finetuner.DataError, match=r"broken\.png"):
        finetuner.encode(finetuner.build_model("dummy-image"), [tmp_path / "img0.png", tmp_path / "broken.png"])


def test_the_vision_plugin_names_a_file_that_is_not_an_image(tmp_path):
    pytest.importorskip("finetuner_vision", reason="the vision plugin is not installed")
    image_captions(tmp_path, "broken.jpg")
    model = finetuner.build_model("efficientnet_b0", pretrained=False)
    with pytest.raises(finetuner.DataError, match=r"broken\.jpg"):
        finetuner.encode(model, [tmp_path / "img0.png", tmp_path / "broken.jpg"])


# --- every error a user can cause is a FinetunerError ------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"miner": "MultiSimilarityMiner"}, finetuner.TrainingError, r"miner='MultiSimilarityMiner' needs labeled data"),
        ({"device": "cuda:99"}, finetuner.OptionError, r"device='cuda:99'"),
        (
            {"freeze": "imaginary", "output_dim": 8},
            finetuner.UnknownNameError,
            r"unknown tower to freeze 'imaginary'\. Valid: text",
        ),
        ({"freeze": 3, "output_dim": 8}, finetuner.OptionError, r"freeze must be True, False, a tower name or a list of them"),
        ({"eval_k": (0,)}, finetuner.TrainingError, r"eval_k must be a list of positive integers"),
        (
            {"optimizer": "SGD", "optimizer_options": {"momentum": -1}},
            finetuner.TrainingError,
            r"cannot build the optimizer 'SGD' with optimizer_options=\{'momentum': -1\}: Invalid momentum",
        ),
        (
            {"optimizer_options": {"betas": 3}},
            finetuner.TrainingError,
            r"cannot build the optimizer 'AdamW' with optimizer_options=\{'betas': 3\}",
        ),
        (
            {"loss_options": {"no_such_option": 1}},
            finetuner.TrainingError,
            r"cannot build the loss 'MultipleNegativesRankingLoss' with loss_options=\{'no_such_option': 1\}",
        ),
        ({"loss": 5}, finetuner.TrainingError, r"loss must be a loss name or a torch\.nn\.Module, got 5 \(int\)"),
        ({"callbacks": [print]}, finetuner.TrainingError, r"callbacks must be a list of Callback objects"),
    ],
    ids=[
        "miner-on-pairs",
        "device",
        "freeze-unknown-tower",
        "freeze-not-a-name",
        "eval_k",
        "optimizer-option",
        "optimizer-option-type",
        "loss-option",
        "loss-type",
        "callback-type",
    ],
)
def test_user_errors_are_finetuner_errors(options, error, message):
    with pytest.raises(error, match=message):
        quiet_fit("dummy-text", pairs(), batch_size=4, **options)


# --- a non-finite loss -------------------------------------------------------------------------


class NanAtCall(torch.nn.Module):
    """In-batch negatives that return NaN from call number ``bad`` on."""

    def __init__(self, bad: int) -> None:
        super().__init__()
        self.bad, self.calls = bad, 0

    def forward(self, queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        loss = F.cross_entropy(20 * queries @ documents.T, torch.arange(len(queries)))
        return loss * float("nan") if self.calls >= self.bad else loss


class KeepWeights(Callback):
    def __init__(self) -> None:
        self.after_step: dict[int, dict[str, torch.Tensor]] = {}

    def on_step_end(self, state: Any) -> None:
        self.after_step[state.step] = {k: v.detach().clone() for k, v in state.model.state_dict().items()}


def test_nan_loss_stops_at_its_step_and_keeps_the_last_good_checkpoint(tmp_path):
    out, seen = tmp_path / "run", KeepWeights()
    common = {
        "batch_size": 4,
        "epochs": 2,
        "learning_rate": 1e-2,
        "checkpoint_every_steps": 1,
        "output_dir": out,
        "verbose": False,
    }
    model = finetuner.build_model("dummy-text")
    with pytest.raises(
        finetuner.TrainingError, match=rf"loss became nan at step 5 .*last good checkpoint \(step 4\) is in {out / 'checkpoint'}"
    ):
        finetuner.fit(model, pairs(), loss=NanAtCall(5), callbacks=[seen], **common)
    assert sorted(seen.after_step) == [1, 2, 3, 4]
    assert all(torch.equal(v, seen.after_step[4][k]) for k, v in model.state_dict().items())  # the bad step changed nothing
    assert all(p.grad is None for p in model.parameters())
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 4
    restored = finetuner.build_model("dummy-text")
    assert load_checkpoint(out / "checkpoint", restored, {})["step"] == 4
    assert all(torch.equal(v, seen.after_step[4][k]) for k, v in restored.state_dict().items())
    assert not (out / "model").exists()
    # what to do: fix the cause, then resume from the kept checkpoint
    model = finetuner.fit("dummy-text", pairs(), loss=NanAtCall(10**9), resume=True, **common)
    assert [h["step"] for h in model.history] == list(range(1, 13))


def test_a_diverging_run_keeps_the_last_checkpoint_that_embeds_to_unit_vectors(tmp_path, caplog):
    """Weights that grow too large embed to NaN or, normalised after an overflow, to zeros: such a checkpoint is not kept."""
    out, texts = tmp_path / "run", [q for q, _ in pairs(64)]
    common = {"output_dim": 8, "batch_size": 8, "epochs": 3, "optimizer": "SGD", "max_grad_norm": 0, "checkpoint_every_steps": 1}
    with pytest.raises(finetuner.TrainingError) as error:
        quiet_fit("dummy-text", pairs(64), learning_rate=1e8, output_dir=out, **common)
    found = re.search(
        r"after step (\d+) the weights \(largest magnitude .*\) embed training items to non-finite or zero vectors; "
        r"training stopped; the last good checkpoint \(step (\d+)\) is in (.*)\. Try a lower learning_rate",
        str(error.value),
    )
    assert found, error.value
    bad, kept = int(found[1]), int(found[2])
    assert found[3] == str(out / "checkpoint") and kept == bad - 1 > 0
    restored = finetuner.build_model("dummy-text", output_dim=8)
    assert load_checkpoint(out / "checkpoint", restored, {})["step"] == kept
    assert all(torch.isfinite(v).all() for v in restored.state_dict().values())
    assert np.allclose(np.linalg.norm(finetuner.encode(restored, texts), axis=1), 1, atol=1e-3)
    # resumed with a lower learning rate, which replaces the checkpoint's
    with caplog.at_level(logging.INFO, logger="finetuner"):
        model = quiet_fit("dummy-text", pairs(64), learning_rate=1e-2, resume=True, output_dir=out, **common)
    assert "learning_rate 0.01 replaces the checkpoint's 1e+08" in caplog.text
    assert [h["step"] for h in model.history] == list(range(1, 25))
    assert np.allclose(np.linalg.norm(finetuner.encode(model, texts), axis=1), 1, atol=1e-3)


def test_fit_without_output_dir_refuses_to_return_weights_that_embed_to_nan():
    with pytest.raises(
        finetuner.TrainingError, match=r"after step 1 .*; training stopped; no checkpoint is written without output_dir"
    ):
        quiet_fit(
            "dummy-text",
            pairs(8),
            output_dim=8,
            batch_size=8,
            optimizer="SGD",
            max_grad_norm=0,
            learning_rate=1e12,
        )


# --- resume refuses another run's checkpoint ---------------------------------------------------


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (
            {"output_dim": 12},
            finetuner.TrainingError,
            r"another model \(model: the checkpoint's is 'dummy-text, output_dim=8', this run's 'dummy-text, output_dim=12'\)",
        ),
        (
            {"loss": NanAtCall(10**9)},
            finetuner.TrainingError,
            r"another loss \(loss: the checkpoint's is 'MultipleNegativesRankingLoss', this run's 'NanAtCall'\)",
        ),
        (
            {"train_data": pairs(23) + [("alpha question 23", "another document")]},
            finetuner.DataError,
            r"another data \(data: the checkpoint's is 'pairs, 24 examples, content hash \w+', this run's 'pairs, 24 examples, content hash \w+'\)",
        ),
    ],
    ids=["model", "loss", "data-of-the-same-size"],
)
def test_resume_refuses_a_checkpoint_of_another_model_loss_or_data(tmp_path, change, error, message):
    out = tmp_path / "run"
    options = {
        "train_data": pairs(),
        "output_dim": 8,
        "batch_size": 4,
        "checkpoint_every_steps": 2,
        "output_dir": out,
        "verbose": False,
    }
    finetuner.fit("dummy-text", **options)
    before = snapshot(out / "checkpoint")
    with pytest.raises(
        error, match=rf"cannot resume from {out / 'checkpoint'}: it was made with {message}\. Resume with the same"
    ):
        finetuner.fit("dummy-text", resume=True, **{**options, **change})
    assert snapshot(out / "checkpoint") == before


# --- failures while saving ---------------------------------------------------------------------


@pytest.fixture
def artifact(tmp_path) -> tuple[Any, Path]:
    model = finetuner.build_model("dummy-text", output_dim=8)
    return model, finetuner.save(model, tmp_path / "model")


def test_a_full_disk_while_writing_weights_keeps_the_previous_artifact(artifact, monkeypatch):
    model, path = artifact
    before = snapshot(path)

    def partial_then_full(module: Any, filename: str, *args: Any, **kwargs: Any) -> None:
        Path(filename).write_bytes(b"\x00" * 100)
        disk_full()

    monkeypatch.setattr(safetensors.torch, "save_model", partial_then_full)
    with torch.no_grad():
        model.projections["text"].weight.add_(1.0)
    with pytest.raises(OSError, match="No space left"):
        finetuner.save(model, path)
    assert snapshot(path) == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["model"]


def safetensors_disk_full(*args: Any, **kwargs: Any) -> None:
    raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


def test_a_full_disk_reported_by_safetensors_is_an_os_error_naming_the_folder(artifact, tmp_path, monkeypatch):
    model, path = artifact
    before = snapshot(path)
    monkeypatch.setattr(safetensors.torch, "save_model", safetensors_disk_full)
    with pytest.raises(OSError) as error:
        finetuner.save(model, path)
    assert (error.value.errno, error.value.filename) == (errno.ENOSPC, str(path))
    assert snapshot(path) == before
    out = tmp_path / "run"
    with pytest.raises(OSError, match=rf"\[Errno 28\] No space left on device: '{out / 'checkpoint'}'"):
        quiet_fit("dummy-text", pairs(), batch_size=4, output_dir=out)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("failing_call", [1, 2], ids=["moving-the-old-one-aside", "moving-the-new-one-in"])
def test_a_failing_rename_keeps_the_previous_artifact(artifact, monkeypatch, failing_call):
    model, path = artifact
    before = snapshot(path)
    real_replace, calls = os.replace, []

    def replace(src: Any, dst: Any) -> None:
        calls.append((src, dst))
        if len(calls) == failing_call:
            disk_full()
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="No space left"):
        finetuner.save(model, path)
    monkeypatch.undo()
    assert snapshot(path) == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["model"]
    finetuner.load(path)


def test_a_failed_first_save_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(safetensors.torch, "save_model", disk_full)
    with pytest.raises(OSError):
        finetuner.save(finetuner.build_model("dummy-text"), tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_a_failing_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    real_save, calls = torch.save, []

    def full_at_the_third_checkpoint(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 3:
            disk_full()
        real_save(*args, **kwargs)

    monkeypatch.setattr(torch, "save", full_at_the_third_checkpoint)
    out = tmp_path / "run"
    with pytest.raises(OSError, match="No space left"):
        quiet_fit("dummy-text", pairs(), batch_size=4, checkpoint_every_steps=1, output_dir=out)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint"]
    assert load_checkpoint(out / "checkpoint", finetuner.build_model("dummy-text"), {})["step"] == 2


# --- loading refuses what is unsafe or does not fit ---------------------------------------------


def test_load_refuses_pickle_files(artifact):
    _, path = artifact
    torch.save({"x": torch.zeros(1)}, path / "backbone-0" / "pytorch_model.bin")
    with pytest.raises(finetuner.ArtifactError, match=r"pickle files \(backbone-0/pytorch_model\.bin\)"):
        finetuner.load(path)


def test_load_refuses_a_pickle_named_safetensors(artifact):
    model, path = artifact
    torch.save(model.state_dict(), path / "model.safetensors")
    with pytest.raises(finetuner.ArtifactError, match=r"model\.safetensors"):
        finetuner.load(path)


def test_load_refuses_weights_whose_shapes_do_not_match_the_config(artifact):
    _, path = artifact
    other = finetuner.build_model("dummy-text", output_dim=12)
    safetensors.torch.save_model(other, str(path / "model.safetensors"))
    with pytest.raises(finetuner.ArtifactError, match=r"do not match the model described in finetuner\.json"):
        finetuner.load(path)


def test_load_refuses_truncated_weights(artifact):
    _, path = artifact
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(finetuner.ArtifactError, match=r"model\.safetensors"):
        finetuner.load(path)


def test_hub_folder_with_custom_code_is_never_executed(tmp_path, monkeypatch):
    pytest.importorskip("finetuner_text", reason="the text plugin is not installed")
    from transformers import BertConfig, BertModel

    folder, marker = tmp_path / "encoder", tmp_path / "custom-code-ran"
    config = BertConfig(
        vocab_size=12, hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=16, max_position_embeddings=32
    )
    BertModel(config).save_pretrained(folder)
    (folder / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "a", "b", "c", "d", "e"]) + "\n"
    )
    auto_map = {"AutoConfig": "custom.Config", "AutoModel": "custom.Model", "AutoTokenizer": ["custom.Tokenizer", None]}
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "model_max_length": 32, "auto_map": auto_map})
    )
    settings = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**settings, "auto_map": auto_map}))
    (folder / "custom.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nfrom transformers import BertConfig as Config, BertModel as Model, BertTokenizer as Tokenizer\n"
    )

    def no_prompt(*args: Any) -> str:
        raise EOFError("no terminal")  # as in a script or a server: nobody to say yes

    monkeypatch.setattr("builtins.input", no_prompt)
    model = finetuner.build_model(f"hf:{folder}")  # a known architecture: built with the library's own code
    assert finetuner.encode(model, ["hello world"]).shape == (1, 8)
    (folder / "config.json").write_text(json.dumps({**settings, "model_type": "custom-only", "auto_map": auto_map}))
    with pytest.raises(finetuner.FinetunerError, match="custom code"):
        finetuner.build_model(f"hf:{folder}", pretrained=False)
    assert not marker.exists()
