"""Quality on Omniglot image-to-image: a CNN from random init, trained on 100 characters, tested on the unseen 36.

Omniglot (``../shared/data/omniglot``): 136 handwritten characters of 5 alphabets, 20 drawings
each. The characters are shuffled with a fixed seed; 100 train the model (metric learning,
class-balanced batches), the other 36 are held out. Each held-out drawing queries all the
others: MAP@R and precision@1 before (random init) and after training, plus the training
throughput in images per second. Pretrained ImageNet weights are not available offline, so the
backbone starts from random init, and it sees the drawings at a small size to keep CPU time low.

Training-time augmentation (``augment=AUGMENT``: timm's training transform with a mild random
resized crop, 85-100 % of the area at an aspect ratio of 0.9-1.1, and neither flip nor colour
jitter) against none (fit's default): the same recipe with seeds 0, 1 and 2 each way, MAP@R on
the held-out characters, the mean of each side against the spread of the seeds. timm's defaults
(``augment=True``: crops down to 8 % of the area, flip, colour jitter) are ImageNet's and cut a
drawing to a fragment of a stroke; bench/README.md has what they measured.

    python bench/bench_quality_omniglot.py [--quick]    # data from ../shared/data, or $FINETUNER_DATA
"""

from __future__ import annotations

import random
import sys
import time

from benchkit import data_root, row

from finetuner.training.callbacks import Callback, TrainState

DATA = data_root() / "omniglot"
MODEL = "timm/resnet18"
IMAGE_SIZE = 48
OUTPUT_DIM = 128
TRAIN_CLASSES = 100
SEED = 0
SEEDS = (0, 1, 2)  # augmentation on vs off
RECIPE = {
    "epochs": 15,
    "batch_size": 64,
    "learning_rate": 1e-3,
    "loss": "TripletMarginLoss",
    "miner": "MultiSimilarityMiner",
    "samples_per_class": 4,
    "seed": SEED,
}
# strokes on white: a small shift and zoom, no flip (a mirrored character can be another) and no colour jitter
AUGMENT = {"scale": (0.85, 1.0), "ratio": (0.9, 1.1), "hflip": 0.0, "color_jitter": 0.0}
METRICS = ("map@r", "precision@1")
QUICK = {"classes": 6, "per_class": 4, "epochs": 1, "batch_size": 8, "seeds": 1}


class Stopwatch(Callback):
    """A fit() callback timing the training loop alone (no model build, evaluation or saving)."""

    def __init__(self) -> None:
        self.started = self.seconds = 0.0
        self.steps = 0

    def on_train_begin(self, state: TrainState) -> None:
        self.started = time.perf_counter()

    def on_train_end(self, state: TrainState) -> None:
        self.seconds, self.steps = time.perf_counter() - self.started, state.step


def split_classes(labels: list[str], train_classes: int, seed: int = SEED) -> tuple[set[str], set[str]]:
    """The distinct labels shuffled with ``seed``: the first ``train_classes`` train, the rest are held out."""
    names = sorted(set(labels))
    random.Random(seed).shuffle(names)
    return set(names[:train_classes]), set(names[train_classes:])


def run(quick: bool = False) -> list[dict]:
    """Train on 100 characters; MAP@R and precision@1 on the 36 unseen ones, before and after; images/s;
    MAP@R with augmentation on and off over three seeds."""
    if not DATA.is_dir():
        return [{"benchmark": "Omniglot quality", "notes": f"SKIPPED: {DATA} not found"}]
    import torch

    import finetuner
    from finetuner.data import LabeledData

    data = finetuner.load_data(DATA)
    train_names, test_names = split_classes(data.labels, TRAIN_CLASSES)
    recipe, per_class = dict(RECIPE), None
    if quick:
        train_names = set(sorted(train_names)[: QUICK["classes"]])
        test_names = set(sorted(test_names)[: QUICK["classes"]])
        recipe.update(epochs=QUICK["epochs"], batch_size=QUICK["batch_size"])
        per_class = QUICK["per_class"]

    def subset(names: set[str], source: str) -> LabeledData:
        kept, seen = [], {}
        for item, label in zip(data.items, data.labels, strict=True):
            if label in names and seen.get(label, 0) != per_class:
                seen[label] = seen.get(label, 0) + 1
                kept.append((item, label))
        return LabeledData([i for i, _ in kept], [label for _, label in kept], source=source)

    train, test = subset(train_names, "omniglot train characters"), subset(test_names, "omniglot held-out characters")

    def train_once(seed: int, augment: bool) -> tuple[dict[str, dict[str, float]], Stopwatch]:
        torch.manual_seed(seed)
        model = finetuner.build_model(MODEL, pretrained=False, output_dim=OUTPUT_DIM, image_size=IMAGE_SIZE)
        watch = Stopwatch()
        options = {**recipe, "seed": seed, "augment": AUGMENT if augment else False}
        model = finetuner.fit(
            model, train, test, output_dir=None, device="cpu", verbose=False, eval_k=(1,), callbacks=[watch], **options
        )
        return model.metrics, watch

    seeds = SEEDS[: QUICK["seeds"]] if quick else SEEDS
    runs = {(seed, augment): train_once(seed, augment) for seed in seeds for augment in (True, False)}
    metrics, watch = runs[(SEED, False)]
    before, after = metrics["before"], metrics["after"]
    images_per_s = watch.steps * recipe["batch_size"] / watch.seconds
    notes = (
        f"{len(train_names)} train characters ({len(train)} drawings) / {len(test_names)} held out ({len(test)}); "
        f"{MODEL} random init at {IMAGE_SIZE} px, {OUTPUT_DIM}-d; {recipe['loss']} + {recipe['miner']}, {recipe['epochs']} epochs, "
        f"batch {recipe['batch_size']}, lr {recipe['learning_rate']}, precision auto, seed {SEED}, no augmentation (the default)"
    )
    if quick:
        notes += " (quick: figures mean nothing)"
    name = "Omniglot unseen characters {}: trained vs random init"
    rows = [row(name.format(metric), after[metric], before[metric], metric, "> 1.0", notes, digits=4) for metric in METRICS]
    rows.append(
        {
            "benchmark": f"Omniglot training throughput ({MODEL} at {IMAGE_SIZE} px, precision auto)",
            "ours": round(images_per_s, 1),
            "peer": None,
            "unit": "img/s",
            "ratio": None,
            "target": "none (reported)",
            "notes": f"{watch.steps} steps of {recipe['batch_size']} images in {watch.seconds:.1f} s, {torch.get_num_threads()} threads, "
            "image decoding and augmentation included" + (" (quick: figures mean nothing)" if quick else ""),
        }
    )
    rows.append(augmentation_row({key: m["after"]["map@r"] for key, (m, _) in runs.items()}, seeds, notes, quick))
    return rows


def augmentation_row(map_at_r: dict[tuple[int, bool], float], seeds: tuple[int, ...], notes: str, quick: bool) -> dict:
    """Held-out MAP@R with augmentation on against off: the means over ``seeds``, and whether the gap beats the seeds' spread."""
    on, off = ([map_at_r[(seed, augment)] for seed in seeds] for augment in (True, False))
    mean_on, mean_off = sum(on) / len(on), sum(off) / len(off)
    spread = max(max(on) - min(on), max(off) - min(off))
    verdict = "met" if mean_on - mean_off > spread else "not met"
    return {
        "benchmark": f"Omniglot unseen characters map@r, mean of {len(seeds)} seeds: augmentation on vs off",
        "ours": round(mean_on, 4),
        "peer": round(mean_off, 4),
        "unit": "map@r",
        "ratio": round(mean_on / mean_off, 3) if mean_off else None,
        "target": "on - off > spread of the seeds",
        "notes": f"on {[round(v, 4) for v in on]}, off {[round(v, 4) for v in off]} (seeds {list(seeds)}); "
        f"on - off {mean_on - mean_off:+.4f} vs spread {spread:.4f}: {verdict}; augmentation = timm's training transform "
        f"with {AUGMENT}; " + notes.replace(f", seed {SEED}, no augmentation (the default)", ""),
    }


if __name__ == "__main__":
    for result in run(quick="--quick" in sys.argv[1:]):
        print(result)
