"""fit() and encode across 2 gloo processes equal one process with the same global batch.

Each rank trains with ``batch_size`` B; the single-process reference uses 2 * B, the same
seed and fp32, so both see the same global batches. DDP averages gradients and the losses
return each rank's share, so the loss curve, the final weights and the metrics must match.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

import finetuner
from finetuner.encoding import encode_sharded
from finetuner.training import distributed
from finetuner.training.callbacks import MetricsLogger
from finetuner.training.distributed import shard
from tests.core.helpers import coloured_images, topic_pairs
from tests.ddp import spawn

WORLD = 2
COMMON = {"precision": "fp32", "device": "cpu", "verbose": False, "learning_rate": 5e-2, "seed": 3}
TEXTS = [f"text number {i} " + "word " * (i % 7) for i in range(11)]  # 11: shards of 6 and 5


def pairs() -> list[tuple[str, str]]:
    return topic_pairs(64)


def scored() -> list[tuple[str, str, float]]:
    return [(q, d, float(i % 5)) for i, (q, d) in enumerate(topic_pairs(48, seed=1))]


def captioned_images() -> list[tuple[str, np.ndarray]]:
    images, labels = coloured_images(8)
    return [(f"a {label} square, picture {i}", image) for i, (image, label) in enumerate(zip(images, labels, strict=True))]


# name -> (backbone, train data, eval data, fit options with the per-rank batch size)
SCENARIOS = {
    "mnrl": (
        "dummy-text",
        lambda: pairs()[:48],
        lambda: pairs()[48:],
        {"epochs": 2, "batch_size": 4, "checkpoint_every_steps": 2},
    ),
    "frozen_cached": (
        "dummy-text",
        lambda: pairs()[:48],
        None,
        {"epochs": 2, "batch_size": 4, "freeze": True, "output_dim": 8, "cache_frozen": "disk", "gradient_accumulation_steps": 2},
    ),
    "cosent": ("dummy-text", scored, None, {"epochs": 1, "batch_size": 4, "loss": "CoSENTLoss"}),
    "clip": ("dummy-text+dummy-image", captioned_images, None, {"epochs": 1, "batch_size": 4, "output_dim": 8}),
    # the temperature gets no gradient from this loss: DDP must not wait for it
    "two_tower_mnrl": (
        "dummy-text+dummy-image",
        captioned_images,
        None,
        {"epochs": 1, "batch_size": 4, "output_dim": 8, "loss": "mnrl"},
    ),
    # GradCache: the last mini-batch syncs through DDP, the temperature is averaged by hand
    "gradcache_negatives": (
        "dummy-text",
        lambda: [(q, d, n) for (q, d), (_, n) in zip(pairs()[:48], topic_pairs(48, seed=1), strict=True)],
        None,
        {"epochs": 1, "batch_size": 4, "mini_batch_size": 2},
    ),
    # several documents per query: its pairs share batches, none a negative of another
    "multi_positive": (
        "dummy-text",
        lambda: [(q, f"{d} {n}") for q, d in pairs()[:24] for n in range(2)],
        None,
        {"epochs": 1, "batch_size": 8},
    ),
    # SigLIP's bias joins the model: DDP averages it, and GradCache by hand
    "siglip": (
        "dummy-text+dummy-image",
        captioned_images,
        None,
        {"epochs": 1, "batch_size": 4, "output_dim": 8, "loss": "siglip"},
    ),
    "gradcache_siglip": (
        "dummy-text+dummy-image",
        captioned_images,
        None,
        {"epochs": 1, "batch_size": 4, "output_dim": 8, "mini_batch_size": 2, "loss": "siglip"},
    ),
    "gradcache_clip": (
        "dummy-text+dummy-image",
        captioned_images,
        None,
        {"epochs": 1, "batch_size": 4, "output_dim": 8, "mini_batch_size": 2},
    ),
}


def run_fit(name: str, out: Path | None, world: int) -> dict:
    """Train scenario ``name`` on ``world`` processes; ``out=None`` writes nothing (the single-process reference)."""
    backbone, train, evaluation, options = SCENARIOS[name]
    options = {**COMMON, **options, "batch_size": options["batch_size"] * (WORLD // world)}
    callbacks = [MetricsLogger(out / "log.jsonl")] if out is not None else []
    model = finetuner.fit(backbone, train(), evaluation() if evaluation else None, output_dir=out, callbacks=callbacks, **options)
    return {
        "losses": [h["loss"] for h in model.history if "loss" in h],
        "weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "metrics": model.metrics,
    }


def run_arcface(out: Path) -> dict:
    images, labels = coloured_images(8)
    model = finetuner.fit(
        "dummy-image",
        list(zip(images, labels, strict=True)),
        kind="labeled",
        loss="ArcFaceLoss",
        epochs=2,
        batch_size=8,
        output_dir=out,
        **COMMON,
    )
    return {
        "weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "losses": [h["loss"] for h in model.history],
    }


def run_resume(out: Path) -> dict:
    """Two epochs straight, and one epoch then a resumed second: the same weights."""
    options = {**COMMON, "scheduler": "constant", "warmup_ratio": 0.0, "batch_size": 4}
    straight = finetuner.fit("dummy-text", pairs()[:48], epochs=2, output_dir=out / "straight", **options)
    finetuner.fit("dummy-text", pairs()[:48], epochs=1, output_dir=out / "split", **options)
    resumed = finetuner.fit("dummy-text", pairs()[:48], epochs=2, output_dir=out / "split", resume=True, **options)
    return {"straight": straight.state_dict(), "resumed": resumed.state_dict()}


def _worker(rank: int, out: str) -> None:
    shared = Path(out)
    results = {name: run_fit(name, shared / name, WORLD) for name in SCENARIOS}
    results["arcface"] = run_arcface(shared / "arcface")
    results["resume"] = run_resume(shared / "resume")
    torch.manual_seed(0)  # the same random weights on both ranks
    distributed.GATHER_BYTES = 3 * 16 * 4  # 3 rows of 16 floats per round: several rounds, the last one uneven
    model = finetuner.build_model("dummy-text")
    results["encode"] = {
        "rank0": encode_sharded(model, TEXTS, precision="fp32", batch_size=4),
        "all": encode_sharded(model, TEXTS, all_ranks=True, precision="fp32"),
        "weights": model.state_dict(),
    }
    results["world"] = dist.get_world_size()
    torch.save(results, shared / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("ddp")
    spawn(_worker, WORLD, out, str(out), timeout=600)
    return out, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def close(actual, expected) -> None:
    torch.testing.assert_close(torch.as_tensor(actual), torch.as_tensor(expected), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_two_ranks_train_like_one_process_with_the_global_batch(ranks, name):
    _, ranked = ranks
    single = run_fit(name, None, world=1)
    assert ranked[0]["world"] == WORLD
    results = [r[name] for r in ranked]
    for result in results:
        assert len(result["losses"]) == len(single["losses"]) > 0
        close(result["losses"], single["losses"])
        for key, value in single["weights"].items():
            close(result["weights"][key], value)
    if SCENARIOS[name][2] is not None:
        for phase in ("before", "after"):
            assert results[0]["metrics"][phase] == results[1]["metrics"][phase]
            for metric, value in single["metrics"][phase].items():
                assert results[0]["metrics"][phase][metric] == pytest.approx(value, abs=1e-6)


def test_only_rank_0_writes_artifact_checkpoint_and_logs(ranks):
    out, results = ranks
    run = out / "mnrl"
    assert (run / "model" / "model.safetensors").is_file() and (run / "checkpoint").is_dir()
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    steps = [line["step"] for line in lines if "loss" in line]
    assert steps == list(range(1, len(results[0]["mnrl"]["losses"]) + 1))  # once per step: rank 1 did not write
    assert [line["loss"] for line in lines if "loss" in line] == pytest.approx(results[0]["mnrl"]["losses"])
    saved = finetuner.load(run / "model").state_dict()
    for key, value in results[0]["mnrl"]["weights"].items():
        close(saved[key], value)
    assert sorted(p.name for p in (out / "frozen_cached" / "cache").iterdir()) == ["side-0.npy", "side-1.npy"]


def test_loss_weights_stay_in_sync_across_ranks(ranks):
    _, results = ranks
    first, second = (r["arcface"] for r in results)
    assert any(k.startswith("towers.image") for k in first["weights"])
    for key, value in first["weights"].items():
        torch.testing.assert_close(second["weights"][key], value, atol=0, rtol=0)
    assert first["losses"] == second["losses"]


def test_resume_under_ddp_continues_the_run(ranks):
    _, results = ranks
    for result in results:
        for key, value in result["resume"]["straight"].items():
            close(result["resume"]["resumed"][key], value)


def test_sharded_encode_returns_every_row_in_input_order(ranks):
    _, results = ranks
    expected = finetuner.encode(_rebuilt(results[0]["encode"]["weights"]), TEXTS, precision="fp32")
    np.testing.assert_allclose(results[0]["encode"]["rank0"], expected, atol=1e-6)
    assert results[1]["encode"]["rank0"] is None
    for result in results:
        np.testing.assert_allclose(result["encode"]["all"], expected, atol=1e-6)


def _rebuilt(weights: dict) -> finetuner.EmbeddingModel:
    model = finetuner.build_model("dummy-text")
    model.load_state_dict(weights)
    return model


def test_shards_are_contiguous_and_cover_everything():
    for count in (0, 1, 5, 11, 12):
        for world in (1, 2, 3, 5):
            parts = [shard(count, rank, world) for rank in range(world)]
            assert [i for part in parts for i in part] == list(range(count))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_torchrun_encode_command_writes_one_array_in_input_order(tmp_path):
    model = finetuner.build_model("dummy-text", output_dim=8)
    finetuner.save(model, tmp_path / "model")
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS) + "\n")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "finetuner",
        "encode",
        str(tmp_path / "model"),
        str(tmp_path / "texts.txt"),
        "-o",
        str(tmp_path / "out.npy"),
        "--precision",
        "fp32",
        "--batch-size",
        "4",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote 11 x 8 embeddings") == 1  # rank 0 writes and reports, rank 1 stays quiet
    np.testing.assert_allclose(
        np.load(tmp_path / "out.npy"), finetuner.encode(tmp_path / "model", TEXTS, precision="fp32"), atol=1e-6
    )


LEAVE_GROUP = """
import os, sys
import torch.distributed
from finetuner.training.distributed import DistributedContext
DistributedContext.setup("cpu")
import torch._dynamo  # what building a timm, torchvision or transformers model does
torch.distributed.destroy_process_group()
threads = [open(f"/proc/self/task/{task}/comm").read().strip() for task in os.listdir("/proc/self/task")]
gloo = sum("gloo" in name for name in threads)
sys.stdout.write(f"rank {os.environ['RANK']} gloo threads left: {gloo}\\n")  # one write: the ranks share stdout
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads thread names from /proc (Linux)")
def test_leaving_the_group_stops_gloo_threads_even_after_model_libraries_load(tmp_path):
    """Left running past destroy_process_group, gloo's threads abort the process at exit now and then."""
    script = tmp_path / "leave.py"
    script.write_text(LEAVE_GROUP)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(line for line in done.stdout.splitlines() if line.startswith("rank")) == [
        "rank 0 gloo threads left: 0",
        "rank 1 gloo threads left: 0",
    ]
