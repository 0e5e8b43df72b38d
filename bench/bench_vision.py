"""Image embedding throughput: finetuner-vision vs plain torchvision on resnet50 and efficientnet_b0 (CPU).

Every run embeds the same preprocessed ``[N, 3, 224, 224]`` batch, with the same weights
(random init: speed does not depend on the values) and thread count; runs are interleaved
in a rotating order, and the median of the repeats is kept. Rows per model:

- the wrapper: ``EmbeddingModel`` forward (tower, L2 normalisation) in fp32 vs the torchvision
  model's own forward in fp32 (target: ratio >= 0.95, i.e. at most 5 % overhead);
- ``precision="auto"``: the same model after ``finetuner.runtime.prepare`` (channels_last) under
  ``finetuner.runtime.autocast`` (bf16 on CPUs with AMX or AVX512-bf16: the tower runs its bf16
  copy with BatchNorm folded) vs torchvision fp32;
- ``compile=True`` on top of auto (``finetuner.runtime.compiled``: the bf16 copy compiled with
  frozen weights; compiling happens in the warm-up, its time is in the notes) vs torchvision fp32.

    python bench/bench_vision.py [--quick]
    OMP_NUM_THREADS=1 python bench/bench_vision.py   # steadier on a machine busy with other work
"""

from __future__ import annotations

import copy
import os
import statistics
import sys
import time
from collections.abc import Callable

MODELS = ("resnet50", "efficientnet_b0")
BATCH_SIZE = 8
IMAGE_SIZE = 224
REPEATS = 7
AUTO_TARGETS = {"resnet50": ">= 3.0", "efficientnet_b0": "none (reported)"}


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(quick: bool = False) -> list[dict]:
    """Measure and return one dict per comparison (images per second, ours vs torchvision)."""
    import torch

    batch, size, repeats = (2, 64, 1) if quick else (BATCH_SIZE, IMAGE_SIZE, REPEATS)
    threads = torch.get_num_threads()
    if quick:  # one thread: on a busy machine, thread barriers make even tiny runs take seconds per layer stack
        torch.set_num_threads(1)
    try:
        return _compare(batch, size, repeats, quick)
    finally:
        torch.set_num_threads(threads)


def _compare(batch: int, size: int, repeats: int, quick: bool) -> list[dict]:
    import torch
    from torchvision import models

    import finetuner
    from finetuner.runtime import autocast, compiled, prepare, resolve_precision

    device = torch.device("cpu")
    dtype = resolve_precision("auto", device)
    auto = "bf16 autocast + channels_last" if dtype is not None else "fp32 + channels_last (no fast bf16 here)"
    torch.manual_seed(0)
    pixels = torch.randn(batch, 3, size, size)
    features = {"pixel_values": pixels}
    rows = []
    for arch in MODELS:
        ours = finetuner.build_model(arch, pretrained=False).eval()
        peer = models.get_model(arch, weights=None).eval()
        missing, unexpected = peer.load_state_dict(ours.tower().backbone.state_dict(), strict=False)
        assert not unexpected and all(k.startswith(("fc.", "classifier.")) for k in missing), (missing, unexpected)
        ours_auto = prepare(copy.deepcopy(ours), device)
        ours_compiled = prepare(copy.deepcopy(ours), device)

        def auto_forward(model: torch.nn.Module = ours_auto) -> torch.Tensor:
            with autocast(device, dtype):
                return model(features)

        def compiled_forward(model: torch.nn.Module = ours_compiled) -> torch.Tensor:
            with compiled(model), autocast(device, dtype):
                return model(features)

        runs: dict[str, Callable[[], object]] = {
            "ours_fp32": lambda model=ours: model(features),
            "ours_auto": auto_forward,
            "ours_compiled": compiled_forward,
            "peer": lambda model=peer: model(pixels),
        }
        times: dict[str, list[float]] = {k: [] for k in runs}
        with torch.inference_mode():
            warmup = {key: _seconds(fn) for key, fn in runs.items()}  # allocator, oneDNN kernels, compiling
            order = list(runs)
            for repeat in range(repeats):  # rotate the order so load drifts hit every run alike
                for key in order[repeat % len(order) :] + order[: repeat % len(order)]:
                    times[key].append(_seconds(runs[key]))
        rate = {k: batch / statistics.median(v) for k, v in times.items()}
        best = {k: batch / min(v) for k, v in times.items()}
        notes = (
            f"batch {batch} at {size} px, {torch.get_num_threads()} threads, median of {repeats} interleaved repeats, "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        if quick:
            notes += " (quick: figures mean nothing)"
        for name, key, target in (
            (f"{arch} wrapper fp32 vs torchvision fp32", "ours_fp32", ">= 0.95"),
            (f"{arch} auto ({auto}) vs torchvision fp32", "ours_auto", AUTO_TARGETS[arch]),
            (f"{arch} auto + compile=True vs torchvision fp32", "ours_compiled", "none (reported)"),
        ):
            best_ratio = f"; ratio of the best runs {best[key] / best['peer']:.3f}"
            if key == "ours_compiled":
                best_ratio += f"; first call (compiling) {warmup[key]:.1f} s"
            rows.append(
                {
                    "benchmark": name,
                    "ours": round(rate[key], 2),
                    "peer": round(rate["peer"], 2),
                    "unit": "img/s",
                    "ratio": round(rate[key] / rate["peer"], 3),
                    "target": target,
                    "notes": notes + best_ratio,
                }
            )
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv[1:]):
        print(row)
