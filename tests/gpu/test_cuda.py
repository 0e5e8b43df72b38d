"""On a CUDA GPU: encoding, bf16 training, ``compile=True`` and the nccl DDP path.

CI machines have no GPU, so these skip there; run them where one is (``pytest tests/gpu``).
The models are tiny and random: what is checked is that CUDA gives the CPU's answers and
that every path runs, not speed (``bench/bench_gpu.py`` measures that).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import finetuner
from tests.core.helpers import quiet_fit, topic_pairs
from tests.ddp import spawn
from tests.text.tiny_models import write_bert

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
TEXTS = ["alpha question", "notes on ahpla", "bravo", "a much longer sentence about charlie and delta " * 3]


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> str:
    return "hf:" + str(write_bert(tmp_path_factory.mktemp("bert"), hidden=64, cased=False, seed=2))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _images(n: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(params=["bert", "timm/resnet18"])
def model_and_items(request: pytest.FixtureRequest, bert: str) -> tuple[finetuner.EmbeddingModel, list]:
    """A random-init text or image model (seed 0) and items for it."""
    torch.manual_seed(0)
    if request.param == "bert":
        return finetuner.build_model(bert, pretrained=False), TEXTS
    return finetuner.build_model(request.param, pretrained=False), _images()


def test_cuda_encoding_matches_cpu(model_and_items):
    model, items = model_and_items
    cpu = finetuner.encode(model, items, device="cpu", precision="fp32")
    cuda = finetuner.encode(model, items, device="cuda", precision="fp32")
    bf16 = finetuner.encode(model, items, device="cuda", precision="bf16")
    auto = finetuner.encode(model, items, device="cuda")
    for result in (cuda, bf16, auto):
        assert result.dtype == np.float32 and result.shape == cpu.shape
    assert _cosines(cuda, cpu).min() > 0.9999  # cuDNN convolutions may run in TF32
    assert _cosines(bf16, cpu).min() > 0.99
    np.testing.assert_array_equal(auto, bf16)  # auto picks bf16 on a GPU with bf16 support
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_cuda_bf16_copy_of_a_cnn_keeps_batch_norm():
    """On CUDA the bf16 inference copy is not BatchNorm-folded (the folded convolutions ran slower on an H100)."""
    model = finetuner.build_model("timm/resnet18", pretrained=False)
    finetuner.encode(model, _images(2), device="cuda", precision="bf16")
    _, copy_ = model.tower().__dict__["_bf16_copy"]
    assert {p.dtype for p in copy_.parameters()} == {torch.bfloat16}
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in copy_.modules())


def test_bf16_training_on_cuda_saves_a_model_the_cpu_loads(bert, tmp_path):
    model = quiet_fit(
        bert,
        topic_pairs(64),
        output_dir=tmp_path / "run",
        device="cuda",
        precision="bf16",
        epochs=3,
        batch_size=16,
        learning_rate=1e-3,
    )
    losses = [h["loss"] for h in model.history if "loss" in h]
    assert len(losses) == 12 and np.isfinite(losses).all()
    assert np.mean(losses[-4:]) < np.mean(losses[:4])
    assert all(p.dtype == torch.float32 and p.is_cuda for p in model.parameters())
    on_gpu = finetuner.encode(model, TEXTS, device="cuda", precision="fp32")
    on_cpu = finetuner.encode(finetuner.load(tmp_path / "run" / "model"), TEXTS, device="cpu", precision="fp32")
    assert _cosines(on_gpu, on_cpu).min() > 0.9999


def test_compile_on_cuda_gives_the_eager_embeddings(model_and_items):
    model, items = model_and_items
    eager = finetuner.encode(model, items, device="cuda", precision="bf16")
    compiled = finetuner.encode(model, items, device="cuda", precision="bf16", compile=True)
    assert _cosines(compiled, eager).min() > 0.99


def test_compiled_bf16_training_on_cuda(bert):
    model = quiet_fit(
        bert,
        topic_pairs(32),
        device="cuda",
        precision="bf16",
        compile=True,
        epochs=1,
        batch_size=8,
    )
    losses = [h["loss"] for h in model.history if "loss" in h]
    assert len(losses) == 4 and np.isfinite(losses).all()
    assert "forward" not in vars(model.tower())  # the plain forward is back after fit


def _nccl_worker(rank: int, bert: str, out: str) -> None:
    import torch.distributed as dist

    model = quiet_fit(
        bert,
        topic_pairs(32),
        output_dir=Path(out) / "run",
        device="cuda",
        precision="bf16",
        epochs=1,
        batch_size=8,
    )
    torch.save(
        {"backend": dist.get_backend(), "losses": [h["loss"] for h in model.history if "loss" in h]}, Path(out) / "result.pt"
    )


def test_ddp_path_on_nccl(bert, tmp_path):
    """One rank (one GPU here) in an nccl group: fit takes the DDP path and writes the model."""
    spawn(_nccl_worker, 1, tmp_path, bert, str(tmp_path), backend="nccl", timeout=300)
    result = torch.load(tmp_path / "result.pt")
    assert result["backend"] == "nccl"
    assert len(result["losses"]) == 4 and np.isfinite(result["losses"]).all()
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_text_attention_on_cuda_avoids_cudnn_plans(bert):
    """Batches padded to their longest text come in many shapes; cuDNN's attention builds a plan per shape."""
    model = finetuner.build_model(bert).to("cuda").train()
    features = {k: v.cuda() for k, v in model.tower().preprocess(TEXTS).items()}
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            model(features, "text").sum().backward()
    names = {event.name for event in profile.events()}
    assert any("attention" in name for name in names)  # the profile did see the attention calls
    assert not any("cudnn_attention" in name for name in names)
