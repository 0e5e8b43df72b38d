"""Losses under a real 2-process gloo group equal the single-process loss of the global batch.

Under DDP the objective optimised is the mean over ranks of each rank's loss (gradients are
averaged), so for every case: mean over ranks of the loss == the full-batch loss, and each
rank's gradient of its local embeddings / world_size == the full-batch gradient of those rows
(the 1/world_size is DDP's averaging, applied to the parameters those embeddings come from).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from finetuner.losses import build_loss, gather_with_grad
from finetuner.losses.distributed import gather_batch
from tests.ddp import spawn

WORLD = 2
ROWS, DIM = 8, 6


def _loss(name, kind="pairs", task="text-to-text", **kwargs):
    return lambda: build_loss(name, kind=kind, task=task, embedding_size=DIM, **kwargs)


# name -> (loss factory, rows held by rank 0 and rank 1)
CASES = {
    "mnrl": (_loss("mnrl"), (4, 4)),
    "mnrl_symmetric": (_loss("mnrl", symmetric=True), (4, 4)),
    "mnrl_uneven": (_loss("mnrl", scale=10.0), (3, 5)),
    "clip": (_loss("clip", task="text-to-image"), (4, 4)),
    "clip_uneven": (_loss("clip", task="text-to-image"), (5, 3)),
    "siglip": (_loss("siglip", task="text-to-image"), (4, 4)),
    "siglip_uneven": (_loss("siglip", task="text-to-image"), (3, 5)),
    "cosent": (_loss("cosent", kind="scored"), (3, 5)),
    "cosine": (_loss("cosine", kind="scored", score_range=(0, 5)), (3, 5)),
    "triplet_mined": (_loss("TripletMarginLoss", kind="labeled", miner="MultiSimilarityMiner", margin=0.3), (4, 4)),
    "supcon": (_loss("SupConLoss", kind="labeled"), (3, 5)),
    "arcface": (_loss("ArcFaceLoss", kind="labeled", num_classes=4), (4, 4)),
}
GLOBAL_LOSS_CASES = ("cosent", "cosine", "triplet_mined", "supcon", "arcface")  # every rank computes the global loss


def _data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return {
        "left": torch.randn(ROWS, DIM, generator=g),
        "right": torch.randn(ROWS, DIM, generator=g),
        "labels": torch.tensor([0, 1, 2, 0, 3, 1, 2, 3]),
        "scores": 5 * torch.rand(ROWS, generator=g),
    }


def _rows(sizes: tuple[int, int], rank: int | None) -> slice:
    return slice(0, ROWS) if rank is None else slice(sum(sizes[:rank]), sum(sizes[: rank + 1]))


def run_case(name: str, rank: int | None = None) -> dict:
    """The loss and gradients on rank ``rank``'s rows, or on the full batch in one process (rank None)."""
    factory, sizes = CASES[name]
    torch.manual_seed(0)  # the same loss parameters (ArcFace) everywhere
    loss = factory()
    data, rows = _data(), _rows(sizes, rank)
    left = data["left"][rows].clone().requires_grad_()
    right = None if loss.kind == "labeled" else data["right"][rows].clone().requires_grad_()
    logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
    logit_bias = nn.Parameter(torch.tensor(-2.0 if name.endswith("uneven") else -10.0))
    value = loss(
        left,
        right,
        labels=data["labels"][rows],
        scores=data["scores"][rows],
        logit_scale=logit_scale,
        logit_bias=logit_bias,
    )
    value.backward()
    params = {"logit_scale": logit_scale, "logit_bias": logit_bias, **dict(loss.named_parameters())}
    return {
        "loss": value.detach(),
        "grads": {"left": left.grad, **({"right": right.grad} if right is not None else {})},
        "params": {n: p.grad for n, p in params.items() if p.grad is not None},
    }


def run_ddp(rank: int | None = None) -> dict:
    """A tiny model trained with in-batch negatives, wrapped in DDP on each rank: its averaged parameter gradients."""
    torch.manual_seed(0)
    model = nn.Linear(DIM, 4)
    data, rows = _data(), _rows((4, 4), rank)
    net = nn.parallel.DistributedDataParallel(model) if rank is not None else model
    embeddings = net(torch.cat([data["left"][rows], data["right"][rows]]))
    queries, documents = embeddings.chunk(2)
    value = _loss("mnrl", symmetric=True)()(queries, documents)
    value.backward()
    return {"loss": value.detach(), "params": {n: p.grad.clone() for n, p in model.named_parameters()}}


def _gather_checks(rank: int) -> dict:
    """gather_with_grad itself: rank r holds r + 1 rows of value r; the backward sums gradients over ranks."""
    local = torch.full((rank + 1, 2), float(rank), requires_grad=True)
    gathered = gather_with_grad(local)
    weights = torch.arange(gathered.shape[0], dtype=torch.float32)[:, None] * (rank + 1)
    (gathered * weights).sum().backward()
    batch = gather_batch(torch.ones(rank + 1), torch.zeros(rank + 1, 3))
    return {"gathered": gathered.detach(), "grad": local.grad, "offset": batch.offset, "size": batch.size}


def _worker(rank: int, out_dir: str) -> None:
    results = {name: run_case(name, rank) for name in CASES}
    results["ddp"] = run_ddp(rank)
    results["gather"] = _gather_checks(rank)
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ranks")
    spawn(_worker, WORLD, out, str(out), timeout=300)
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(CASES))
def test_distributed_loss_equals_the_full_batch_loss(ranks, name):
    full = run_case(name)
    values = [r[name]["loss"] for r in ranks]
    close(torch.stack(values).mean(), full["loss"])
    if name in GLOBAL_LOSS_CASES:
        for value in values:
            close(value, full["loss"])
    for side, grad in full["grads"].items():
        close(torch.cat([r[name]["grads"][side] for r in ranks]) / WORLD, grad)
    assert set(full["params"]) == set(ranks[0][name]["params"])
    for param, grad in full["params"].items():
        close(torch.stack([r[name]["params"][param] for r in ranks]).mean(0), grad)  # what DDP's averaging gives
        if name in GLOBAL_LOSS_CASES:
            for r in ranks:
                close(r[name]["params"][param], grad)  # loss parameters stay in sync without DDP


def test_the_temperature_the_siglip_bias_and_arcface_weights_get_gradients(ranks):
    assert set(ranks[0]["clip"]["params"]) == {"logit_scale"}
    assert set(ranks[0]["siglip"]["params"]) == {"logit_scale", "logit_bias"}  # the model's, as ClipLoss's temperature
    assert {"module.loss.W"} <= set(ranks[0]["arcface"]["params"])


def test_ddp_parameter_gradients_equal_single_process_training(ranks):
    full = run_ddp()
    close(torch.stack([r["ddp"]["loss"] for r in ranks]).mean(), full["loss"])
    for r in ranks:
        for name, grad in full["params"].items():
            close(r["ddp"]["params"][name], grad)


def test_gather_with_grad_concatenates_in_rank_order_and_sums_gradients(ranks):
    expected = torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    for rank, r in enumerate(ranks):
        g = r["gather"]
        close(g["gathered"], expected)
        # d/d(row i) of sum over ranks s of (s + 1) * i * row_i = 3 * i, at this rank's global rows
        rows = torch.arange(rank, 2 * rank + 1, dtype=torch.float32)[:, None]
        close(g["grad"], (3 * rows).expand(-1, 2))
        assert (g["offset"], g["size"]) == (rank, 3)


def test_gather_is_the_identity_without_a_process_group():
    tensor = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(tensor) is tensor
    batch = gather_batch(tensor, torch.zeros(3))
    assert (batch.offset, batch.size, batch.world_size) == (0, 3, 1)
    with pytest.raises(ValueError, match="same number of rows"):
        gather_batch(tensor, torch.zeros(2))
