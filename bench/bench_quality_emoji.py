"""Quality on Noto emoji text-to-image: a two-tower model finds held-out emoji by their Unicode name.

Noto emoji (``../shared/data/noto_emoji``): 1,412 images (64x64) with their Unicode names. The
rows are shuffled with a fixed seed and 200 are held out. The model joins the pretrained
all-MiniLM-L6-v2 text tower (frozen; its projection head trains) and a ResNet-18 image tower
from random init (pretrained weights are not available offline), projected into one 128-d
space and trained with the CLIP loss on the rest. Scored on the held-out emoji, each lower-cased
name against the 200 held-out images: Recall@1/5/10 text-to-image, before and after training.

WiSE-FT: the same model with its text tower trained too, then interpolated with its starting
weights at alpha 0, 0.25, 0.5, 0.75 and 1 (``finetuner evaluate --wise-ft``): held-out emoji
Recall@10, and on a second, unrelated split (``../shared/data/tiny_coco``: each COCO photo's
first caption queries the 33 photos' second captions, through the text tower) Recall@1, which
shows what the pretrained text tower loses to fine-tuning and gets back.

SigLIP loss vs CLIP loss: open_clip ViT-B-32 and a SigLIP-style transformers configuration
(written here, with a word-level tokenizer of the emoji names), both from random init, trained
on the same batches with each loss; held-out Recall@10. Random init makes this a check of the
training signal, not a zero-shot claim. ``--quick`` trains the SigLIP-style model alone, tiny.

    python bench/bench_quality_emoji.py [--quick] [--without-open-clip]    # data from ../shared/data, or $FINETUNER_DATA
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

from benchkit import data_root

DATA = data_root() / "noto_emoji"
MODEL = "all-MiniLM-L6-v2+timm/resnet18"
IMAGE_SIZE = 64
OUTPUT_DIM = 128
HELD_OUT = 200
SEED = 0
RECIPE = {"epochs": 10, "batch_size": 64, "learning_rate": 1e-3, "loss": "ClipLoss", "seed": SEED}
KS = (1, 5, 10)
QUICK = {"train": 32, "held_out": 16, "epochs": 1, "batch_size": 8}
COCO = DATA.parent / "tiny_coco"
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
LOSSES = ("SigLIPLoss", "ClipLoss")  # ours, peer
OPEN_CLIP = "open_clip/ViT-B-32"
SIGLIP_STYLE = {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 4}
SIGLIP_QUICK = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
MAX_TOKENS = 16


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


def read_coco_captions(directory: Path = COCO):
    """Per photo of ``captions.csv``, its first caption (query) and its second (document), in file order."""
    import csv

    from finetuner.data import PairData

    by_image: dict[str, list[str]] = {}
    with (directory / "captions.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            by_image.setdefault(row["image"], []).append(row["caption"].strip())
    return PairData([c[0] for c in by_image.values()], [c[1] for c in by_image.values()], source="tiny_coco captions")


def write_siglip_style(folder: Path, texts: list[str], layers: dict[str, int]) -> Path:
    """A SigLIP configuration (no weights) with ``layers``' sizes, 64 px images and a word-level tokenizer of ``texts``' words."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, SiglipConfig, SiglipImageProcessor

    split = pre_tokenizers.Whitespace()
    words = sorted({word for text in texts for word, _ in split.pre_tokenize_str(text.lower())})
    vocab = {token: i for i, token in enumerate(("<unk>", "</s>", *words))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = split
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", eos_token="</s>", pad_token="</s>", model_max_length=MAX_TOKENS
    ).save_pretrained(folder)
    text = {**layers, "vocab_size": len(vocab), "max_position_embeddings": MAX_TOKENS}
    text |= {"pad_token_id": 1, "eos_token_id": 1, "bos_token_id": 1}
    vision = {**layers, "image_size": IMAGE_SIZE, "patch_size": 8}
    SiglipConfig(text_config=text, vision_config=vision).save_pretrained(folder)
    SiglipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(folder)
    return folder


def run(quick: bool = False, open_clip: bool = True) -> list[dict]:
    """Train the two-tower model; text-to-image Recall@1/5/10 on the held-out emoji, before and after.

    ``open_clip=False`` (``--without-open-clip``) leaves out the open_clip ViT-B-32 loss comparison, the hour of CPU time.
    """
    if not (DATA / "emoji_metadata.csv").is_file():
        return [{"benchmark": "Noto emoji text-to-image quality", "notes": f"SKIPPED: {DATA / 'emoji_metadata.csv'} not found"}]
    import torch
    from bench_quality_omniglot import Stopwatch  # the sibling benchmark's training timer

    import finetuner
    from finetuner.data import PairData

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
    rows = [
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
    return rows + wise_ft_rows(train, test, recipe, quick) + loss_rows(train, test, recipe, quick, open_clip)


def wise_ft_rows(train, test, recipe: dict, quick: bool) -> list[dict]:
    """Both towers trained, then WiSE-FT at each alpha: held-out emoji t2i recall@10 and tiny_coco caption recall@1."""
    if not (COCO / "captions.csv").is_file():
        return [{"benchmark": "Noto emoji WiSE-FT", "notes": f"SKIPPED: {COCO / 'captions.csv'} not found"}]
    import torch

    import finetuner
    from finetuner.training.wise_ft import evaluate_alphas, tower_weights

    torch.manual_seed(SEED)
    image_options = {"pretrained": False, "image_size": IMAGE_SIZE}
    model = finetuner.build_model(MODEL, output_dim=OUTPUT_DIM, image_options=image_options)
    start = tower_weights(model)
    model = finetuner.fit(model, train, output_dir=None, device="cpu", verbose=False, **recipe)
    common = {"device": "cpu"}
    emoji = evaluate_alphas(model, test, ALPHAS, start, k=(10,), metrics=["t2i/recall@10"], **common)
    coco = evaluate_alphas(model, read_coco_captions(), ALPHAS, start, k=(1,), metrics=["recall@1"], modality="text", **common)
    notes = (
        f"{MODEL}, both towers trained (text from pretrained, image from random init at {IMAGE_SIZE} px), {OUTPUT_DIM}-d, "
        f"CLIP loss, {recipe['epochs']} epochs, batch {recipe['batch_size']}, lr {recipe['learning_rate']}, seed {SEED}; "
        "alpha 1 = fine-tuned, 0 = the starting weights (the heads keep their trained values); peer = alpha 1"
        + (" (quick: figures mean nothing)" if quick else "")
    )
    rows = []
    for name, results, metric in (
        (f"held-out emoji ({len(test)}) t2i recall@10", emoji, "t2i/recall@10"),
        ("tiny_coco captions (33, text tower) recall@1", coco, "recall@1"),
    ):
        tuned = results[1.0][metric]
        rows += [
            {
                "benchmark": f"Noto emoji WiSE-FT alpha {alpha:g}: {name}",
                "ours": round(results[alpha][metric], 4),
                "peer": round(tuned, 4),
                "unit": metric,
                "ratio": round(results[alpha][metric] / tuned, 3) if tuned else None,
                "target": "none (the trade-off curve, reported)",
                "notes": notes,
            }
            for alpha in ALPHAS
        ]
    return rows


def loss_rows(train, test, recipe: dict, quick: bool, open_clip: bool = True) -> list[dict]:
    """SigLIP loss against CLIP loss on the same batches, per model from random init: held-out t2i recall@10."""
    import tempfile

    import torch

    import finetuner

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        texts = list(train.queries) + list(test.queries)
        siglip = write_siglip_style(Path(folder), texts, SIGLIP_QUICK if quick else SIGLIP_STYLE)
        models = {"SigLIP-style transformers config": f"hf-clip:{siglip}"}
        if open_clip and not quick:  # ViT-B-32 at 224 px: minutes per epoch on a CPU
            models = {OPEN_CLIP: OPEN_CLIP, **models}
        for label, name in models.items():
            recall = {}
            for loss in LOSSES:
                torch.manual_seed(SEED)
                model = finetuner.build_model(name, pretrained=False)
                options = {**recipe, "loss": loss}
                model = finetuner.fit(model, train, test, output_dir=None, device="cpu", verbose=False, eval_k=(10,), **options)
                recall[loss] = model.metrics["after"]["t2i/recall@10"]
            ours, peer = (recall[loss] for loss in LOSSES)
            rows.append(
                {
                    "benchmark": f"Noto emoji held-out t2i recall@10, {label} from random init: SigLIP loss vs CLIP loss",
                    "ours": round(ours, 4),
                    "peer": round(peer, 4),
                    "unit": "recall@10",
                    "ratio": round(ours / peer, 3) if peer else None,
                    "target": "none (reported; random init: a training-signal check, not a zero-shot claim)",
                    "notes": f"{len(train)} training emoji, {len(test)} held out; both losses from the same random init "
                    f"and batches, {recipe['epochs']} epochs, batch {recipe['batch_size']}, lr {recipe['learning_rate']}, "
                    f"seed {SEED}; chance is 10/{len(test)}" + (" (quick: figures mean nothing)" if quick else ""),
                }
            )
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv[1:], open_clip="--without-open-clip" not in sys.argv[1:]):
        print(row)
