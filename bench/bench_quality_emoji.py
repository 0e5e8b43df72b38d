"""Quality on Noto emoji text-to-image: a two-tower model finds held-out emoji by their Unicode name.

Noto emoji (``../shared/data/noto_emoji``): 1,412 images (64x64) with their Unicode names. The
rows are shuffled with a fixed seed and 200 are held out. The model joins the pretrained
all-MiniLM-L6-v2 text tower (frozen; its projection head trains) and a ResNet-18 image tower
from random init (pretrained weights are not available offline), projected into one 128-d
space and trained with the CLIP loss on the rest. Scored on the held-out emoji, each lower-cased
name against the 200 held-out images: Recall@1/5/10 text-to-image, before and after training.

    python bench/bench_quality_emoji.py [--quick]    # data from ../shared/data, or $FINETUNER_DATA
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("FINETUNER_DATA", HERE.parent.parent / "shared" / "data")) / "noto_emoji"
MODEL = "all-MiniLM-L6-v2+timm/resnet18"
IMAGE_SIZE = 64
OUTPUT_DIM = 128
HELD_OUT = 200
SEED = 0
RECIPE = {"epochs": 10, "batch_size": 64, "learning_rate": 1e-3, "loss": "ClipLoss", "seed": SEED}
KS = (1, 5, 10)
QUICK = {"train": 32, "held_out": 16, "epochs": 1, "batch_size": 8}


def read_emoji(directory: Path = DATA):
    """(lower-cased Unicode name, image path) pairs from ``emoji_metadata.csv``, in file order."""
    import finetuner
    from finetuner.data import PairData

    data = finetuner.load_data(directory / "emoji_metadata.csv", kind="pairs", columns={"text": "name", "image": "image"})
    return PairData([name.lower() for name in data.queries], data.documents, source=data.source)


def split(data, held_out: int, seed: int = SEED):
    """Shuffle the pairs with ``seed``; the last ``held_out`` are the test set."""
    from finetuner.data import PairData

    order = list(range(len(data)))
    random.Random(seed).shuffle(order)

    def part(rows: list[int], name: str) -> PairData:
        return PairData([data.queries[i] for i in rows], [data.documents[i] for i in rows], source=f"noto emoji ({name})")

    return part(order[:-held_out], "train"), part(order[-held_out:], "held out")


def run(quick: bool = False) -> list[dict]:
    """Train the two-tower model; text-to-image Recall@1/5/10 on the held-out emoji, before and after."""
    if not (DATA / "emoji_metadata.csv").is_file():
        return [{"benchmark": "Noto emoji text-to-image quality", "notes": f"SKIPPED: {DATA / 'emoji_metadata.csv'} not found"}]
    import torch

    import finetuner
    from finetuner.data import PairData

    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from bench_quality_omniglot import Stopwatch  # the sibling benchmark's training timer

    train, test = split(read_emoji(), QUICK["held_out"] if quick else HELD_OUT)
    recipe = dict(RECIPE)
    if quick:
        train = PairData(train.queries[: QUICK["train"]], train.documents[: QUICK["train"]], source=train.source)
        recipe.update(epochs=QUICK["epochs"], batch_size=QUICK["batch_size"])
    torch.manual_seed(SEED)
    image_options = {"pretrained": False, "image_size": IMAGE_SIZE}
    model = finetuner.build_model(MODEL, output_dim=OUTPUT_DIM, freeze="text", image_options=image_options)
    watch = Stopwatch()
    started = time.perf_counter()
    model = finetuner.fit(
        model, train, test, output_dir=None, device="cpu", verbose=False, eval_k=KS, callbacks=[watch], **recipe
    )
    seconds = time.perf_counter() - started
    before, after = model.metrics["before"], model.metrics["after"]
    notes = (
        f"{len(train)} training emoji, {len(test)} held out; {MODEL} (text frozen, image random init at {IMAGE_SIZE} px), "
        f"{OUTPUT_DIM}-d; CLIP loss, {recipe['epochs']} epochs, batch {recipe['batch_size']}, lr {recipe['learning_rate']}, "
        f"precision auto, seed {SEED}; training {watch.seconds:.0f} s ({watch.steps * recipe['batch_size'] / watch.seconds:.0f} pairs/s), "
        f"{seconds:.0f} s with evaluations; peer = before training (chance is k/{len(test)})"
    )
    if quick:
        notes += " (quick: figures mean nothing)"
    return [
        {
            "benchmark": f"Noto emoji held-out text-to-image recall@{k}: trained vs untrained",
            "ours": round(after[f"t2i/recall@{k}"], 4),
            "peer": round(before[f"t2i/recall@{k}"], 4),
            "unit": f"recall@{k}",
            "ratio": round(after[f"t2i/recall@{k}"] / before[f"t2i/recall@{k}"], 2) if before[f"t2i/recall@{k}"] else None,
            "target": "> 1.0",
            "notes": notes,
        }
        for k in KS
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv[1:]):
        print(row)
