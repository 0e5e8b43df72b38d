"""Precision ("auto"/"fp32"/"bf16"), channels_last CNN towers and compile=True on the dummy plugin's towers."""

from __future__ import annotations

import argparse
import logging
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

import finetuner
import finetuner.training.trainer as trainer_module
from finetuner import runtime
from finetuner.errors import TrainingError, UnknownNameError
from tests.core.helpers import coloured_images, quiet_fit, topic_pairs

TEXTS = ["alpha question", "", "notes on ohce", "a somewhat longer sentence about delta and echo", "golf"]
CPU = torch.device("cpu")


@pytest.fixture
def fresh_log():
    """The choice is logged once per process: forget earlier tests' choices, here and after."""
    runtime._log_choice.cache_clear()
    yield
    runtime._log_choice.cache_clear()


@pytest.mark.parametrize(
    ("cpuinfo", "fast"),
    [
        ("flags : fpu avx512f avx512_bf16 avx512_vnni", True),
        ("flags : fpu amx_bf16 amx_tile", True),
        ("flags : fpu avx2 avx512f", False),
        ("", False),
    ],
)
def test_cpu_bf16_detection_reads_the_cpu_flags(monkeypatch, tmp_path, cpuinfo, fast):
    fake = tmp_path / "cpuinfo"
    fake.write_text(cpuinfo)
    monkeypatch.setattr(runtime, "Path", lambda _: fake)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert runtime.cpu_has_fast_bf16.__wrapped__() is fast


@pytest.mark.parametrize("fast", [True, False])
def test_auto_picks_bf16_only_where_the_cpu_runs_it_fast(monkeypatch, fresh_log, fast):
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: fast)
    assert runtime.resolve_precision("auto", CPU) == (torch.bfloat16 if fast else None)
    assert runtime.resolve_precision("fp32", CPU) is None
    assert runtime.resolve_precision("bf16", CPU) == torch.bfloat16


@pytest.mark.parametrize(("major", "fast"), [(7, False), (8, True), (9, True)])
def test_auto_on_a_gpu_wants_native_bf16(monkeypatch, fresh_log, major, fast):
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: types.SimpleNamespace(major=major))
    expected = torch.bfloat16 if fast else None  # V100s and T4s (compute capability 7.x) only emulate bf16
    assert runtime.resolve_precision("auto", torch.device("cuda", 0)) == expected


def test_unknown_precision_names_the_choices():
    with pytest.raises(UnknownNameError, match=r"precision 'fp16'.*Valid: auto, bf16, fp32"):
        finetuner.encode(finetuner.build_model("dummy-text"), TEXTS, precision="fp16")


@pytest.mark.parametrize("fast", [True, False])
def test_the_auto_choice_is_logged_once(monkeypatch, caplog, fresh_log, fast):
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: fast)
    caplog.set_level(logging.INFO, logger="finetuner")
    model = finetuner.build_model("dummy-text", output_dim=8)
    for _ in range(3):
        finetuner.encode(model, TEXTS, precision="auto", device="cpu")
    finetuner.evaluate(model, topic_pairs(8), precision="auto", device="cpu")
    choices = [r.getMessage() for r in caplog.records if r.getMessage().startswith("precision:")]
    assert choices == [
        f"precision: {'bf16 autocast' if fast else 'fp32'} on cpu ({'' if fast else 'no '}CPU with AMX-bf16 or AVX512-bf16)"
    ]


@pytest.mark.parametrize("precision", ["bf16", "auto"])
def test_embeddings_are_float32_numpy_whatever_the_compute_precision(precision):
    torch.manual_seed(0)
    text = finetuner.build_model("dummy-text", output_dim=8)
    images, _ = coloured_images(2)
    image = finetuner.build_model("dummy-image", output_dim=8)
    for model, items in ((text, TEXTS), (image, images)):
        low = finetuner.encode(model, items, precision=precision, device="cpu")
        full = finetuner.encode(model, items, precision="fp32", device="cpu")
        assert isinstance(low, np.ndarray) and low.dtype == np.float32 and low.shape == (len(items), 8)
        np.testing.assert_allclose(np.linalg.norm(low, axis=1), 1.0, atol=1e-5)  # normalised in fp32
        np.testing.assert_allclose(low, full, atol=3e-2)


def test_bf16_forced_on_cpu_computes_in_bf16():
    model = finetuner.build_model("dummy-image", output_dim=8)
    seen = []
    model.projections["image"].register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    images, _ = coloured_images(1)
    finetuner.encode(model, images, precision="bf16", device="cpu")
    finetuner.encode(model, images, precision="fp32", device="cpu")
    assert seen == [torch.bfloat16, torch.float32]


class RecordingLoss(nn.Module):
    """In-batch negatives that records what the training loop hands to a loss."""

    kinds = ("pairs",)

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.dtype, torch.dtype, bool]] = []

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        self.calls.append((left.dtype, right.dtype, torch.is_autocast_enabled("cpu")))
        logits = 20 * F.normalize(left, dim=-1) @ F.normalize(right, dim=-1).T
        return F.cross_entropy(logits, torch.arange(len(left)))


def test_bf16_training_keeps_weights_optimizer_state_and_loss_in_fp32(monkeypatch):
    optimizers = []

    def recording_build_optimizer(*args, **kwargs):
        optimizers.append(trainer_module.build_optimizer.__wrapped__(*args, **kwargs))
        return optimizers[-1]

    recording_build_optimizer.__wrapped__ = trainer_module.build_optimizer
    monkeypatch.setattr(trainer_module, "build_optimizer", recording_build_optimizer)
    torch.manual_seed(0)
    model = finetuner.build_model("dummy-text", output_dim=8)
    head_dtypes = []
    model.projections["text"].register_forward_hook(
        lambda module, args, out: head_dtypes.append(out.dtype) if module.training else None
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = RecordingLoss()
    tuned = quiet_fit(
        model,
        topic_pairs(48),
        loss=loss,
        epochs=2,
        batch_size=8,
        learning_rate=1e-2,
        precision="bf16",
        device="cpu",
    )

    assert head_dtypes and set(head_dtypes) == {torch.bfloat16}  # the forward ran under bf16 autocast
    assert loss.calls and set(loss.calls) == {(torch.float32, torch.float32, False)}  # the loss: fp32, autocast off
    assert all(p.dtype == torch.float32 for p in tuned.parameters())
    assert any(not torch.equal(before[k], v) for k, v in tuned.state_dict().items())  # it did train
    (optimizer,) = optimizers
    states = [
        t for state in optimizer.state.values() for t in state.values() if isinstance(t, torch.Tensor) and t.is_floating_point()
    ]
    assert len(states) >= 2 * sum(len(g["params"]) for g in optimizer.param_groups)  # AdamW: exp_avg and exp_avg_sq per parameter
    assert all(t.dtype == torch.float32 for t in states)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in tuned.history if "loss" in h)


def test_cnn_towers_run_channels_last_after_encode_and_fit():
    images, labels = coloured_images(4)
    model = finetuner.build_model("dummy-image")
    assert model.tower().channels_last
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and not any(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    finetuner.encode(model, images, precision="auto", device="cpu")
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    tuned = quiet_fit(
        "dummy-image",
        list(zip(images, labels, strict=True)),
        kind="labeled",
        epochs=1,
        batch_size=8,
        device="cpu",
    )
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in tuned.modules() if isinstance(c, nn.Conv2d))


def test_text_towers_keep_their_memory_format():
    model = finetuner.build_model("dummy-text")
    finetuner.encode(model, TEXTS, device="cpu")
    assert all(p.is_contiguous() for p in model.parameters())


def test_compiled_fit_and_encode_leave_the_model_plain(tmp_path):
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    plain_keys = set(finetuner.build_model("dummy-text", output_dim=8).state_dict())
    graphs = counters["stats"]["unique_graphs"]
    model = quiet_fit(
        "dummy-text",
        topic_pairs(32),
        output_dim=8,
        epochs=1,
        batch_size=8,
        compile=True,
        precision="fp32",
        device="cpu",
        output_dir=tmp_path,
    )
    assert counters["stats"]["unique_graphs"] > graphs  # the tower really went through torch.compile
    assert "forward" not in vars(model.tower())  # the compiled forward is gone once fit returns
    assert set(model.state_dict()) == plain_keys
    assert set(load_file(tmp_path / "model" / "model.safetensors")) == plain_keys  # no "_orig_mod." prefixes
    plain = finetuner.encode(model, TEXTS, precision="fp32", device="cpu", batch_size=2)
    compiled = finetuner.encode(model, TEXTS, precision="fp32", device="cpu", batch_size=2, compile=True)
    np.testing.assert_allclose(compiled, plain, atol=1e-5)
    np.testing.assert_allclose(finetuner.encode(tmp_path / "model", TEXTS, precision="fp32", compile=True), plain, atol=1e-5)


def test_compile_option_must_be_a_bool():
    with pytest.raises(TrainingError, match="compile must be True or False"):
        quiet_fit("dummy-text", topic_pairs(16), compile="yes", batch_size=8)


def test_cli_compile_flag_reaches_fit():
    from finetuner.commands import fit as fit_command

    parser = argparse.ArgumentParser()
    fit_command.add_arguments(parser)
    base = ["--model", "dummy-text", "--train-data", "pairs.csv"]
    assert fit_command.options_from(parser.parse_args([*base, "--compile", "--precision", "bf16"]))["compile"] is True
    assert "compile" not in fit_command.options_from(parser.parse_args(base))
