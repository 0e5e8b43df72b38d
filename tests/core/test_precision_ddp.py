"""bf16 autocast and compile=True in the DDP path: 2 gloo processes train the dummy text tower."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file

import finetuner
from tests.core.helpers import topic_pairs
from tests.ddp import spawn

WORLD = 2
OPTIONS = {
    "precision": "bf16",
    "compile": True,
    "device": "cpu",
    "verbose": False,
    "learning_rate": 5e-2,
    "seed": 3,
    "epochs": 2,
    "batch_size": 4,
    "output_dim": 8,
}


def _worker(rank: int, out: str) -> None:
    from torch._dynamo.utils import counters

    model = finetuner.fit("dummy-text", topic_pairs(48), output_dir=Path(out) / "run", **OPTIONS)
    result = {
        "world": dist.get_world_size(),
        "weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "losses": [h["loss"] for h in model.history if "loss" in h],
        "graphs": counters["stats"]["unique_graphs"],
        "compiled_forward_left": "forward" in vars(model.tower()),
    }
    torch.save(result, Path(out) / f"rank{rank}.pt")


def test_bf16_compiled_training_under_ddp(tmp_path):
    spawn(_worker, WORLD, tmp_path, str(tmp_path), timeout=600)
    first, second = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD))
    assert first["world"] == WORLD
    for result in (first, second):
        assert result["graphs"] > 0 and not result["compiled_forward_left"]
        assert len(result["losses"]) == 2 * 48 // (WORLD * 4)
        assert all(torch.isfinite(torch.tensor(result["losses"])))
        assert all(v.dtype == torch.float32 for v in result["weights"].values())
    for key, value in first["weights"].items():  # DDP kept the ranks' fp32 master weights identical
        torch.testing.assert_close(second["weights"][key], value, atol=0, rtol=0)
    saved = load_file(tmp_path / "run" / "model" / "model.safetensors")
    assert set(saved) == set(first["weights"])
    for key, value in first["weights"].items():
        torch.testing.assert_close(saved[key], value, atol=0, rtol=0)
