"""Tower.run_encoder: any tower, first-party or third-party, runs a bf16 copy of its encoder for bf16 inference."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import finetuner
from finetuner.models import Tower

BF16_AUTOCAST = torch.autocast("cpu", dtype=torch.bfloat16)


class Probe(nn.Module):
    """A linear layer that records each call's (weight dtype, input dtype, autocast on) and returns a dict."""

    calls: ClassVar[list[tuple[torch.dtype, torch.dtype, bool]]] = []  # shared with the bf16 copy

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        Probe.calls.append((self.linear.weight.dtype, x.dtype, torch.is_autocast_enabled("cpu")))
        return {"out": self.linear(x)}


class ProbeTower(Tower):
    output_dim = 3

    def __init__(self, bf16_autocast: bool = True) -> None:
        super().__init__()
        self.bf16_autocast = bf16_autocast
        self.probe = Probe()

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.run_encoder(self.probe, features["x"])["out"]


@pytest.fixture
def x() -> dict[str, torch.Tensor]:
    Probe.calls.clear()
    return {"x": torch.randn(2, 4, generator=torch.Generator().manual_seed(0))}


@pytest.mark.parametrize("autocast", [True, False])
def test_bf16_inference_calls_a_bf16_copy_inside_or_outside_autocast_as_the_tower_declares(x, autocast):
    tower = ProbeTower(bf16_autocast=autocast)
    with torch.inference_mode(), BF16_AUTOCAST:
        out = tower(x)
    assert Probe.calls == [(torch.bfloat16, torch.bfloat16, autocast)]  # floating inputs go in as bf16
    assert out.dtype == torch.float32  # and outputs, nested in a dict too, come back fp32
    _, copy_ = tower.__dict__["_bf16_copy"]
    assert copy_ is not tower.probe and tower.probe.linear.weight.dtype == torch.float32
    torch.testing.assert_close(out, tower.probe.linear(x["x"]).detach(), atol=3e-2, rtol=3e-2)


def test_outside_bf16_inference_the_encoder_runs_itself_and_training_frees_the_copy(x):
    tower = ProbeTower()
    with torch.inference_mode(), BF16_AUTOCAST:
        tower(x)
    Probe.calls.clear()
    with torch.no_grad(), BF16_AUTOCAST:  # autocast without inference mode, as in evaluation during fit
        tower(x)
    with torch.inference_mode():  # fp32 inference
        tower(x)
    assert Probe.calls == [(torch.float32, torch.float32, True), (torch.float32, torch.float32, False)]
    assert "_bf16_copy" in tower.__dict__
    tower(x).sum().backward()
    assert "_bf16_copy" not in tower.__dict__ and tower.probe.linear.weight.grad is not None


@pytest.mark.parametrize("name", ["dummy-text", "dummy-image"])
def test_a_third_party_tower_gets_the_copy_and_stays_close_to_autocast(name):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    items = (
        ["alpha question", "notes on ohce", "a somewhat longer sentence about delta"]
        if name == "dummy-text"
        else [rng.integers(0, 255, (20, 20, 3), dtype=np.uint8) for _ in range(3)]
    )
    model = finetuner.build_model(name).eval()
    tower = model.tower()
    with torch.no_grad(), BF16_AUTOCAST:
        autocast = F.normalize(tower(tower.preprocess(items)).float(), dim=-1).numpy()
    assert "_bf16_copy" not in tower.__dict__
    copied = finetuner.encode(model, items, precision="bf16", device="cpu")
    _, copy_ = tower.__dict__["_bf16_copy"]
    assert {p.dtype for p in copy_.parameters()} == {torch.bfloat16}
    assert float((autocast * copied).sum(1).min()) > 0.99
