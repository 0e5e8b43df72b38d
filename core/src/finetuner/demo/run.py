"""The three demos: a real fine-tune per task on embedded data, with before/after metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEADLINE = ("ndcg@10", "recall@1", "recall@10", "mrr@10", "map@r", "precision@1", "r_precision")


@dataclass(frozen=True)
class Demo:
    task: str
    model: str
    data: str
    build_options: dict[str, Any]
    fit_options: dict[str, Any]


DEMOS = {
    "text-to-text": Demo(
        task="text-to-text",
        model="all-MiniLM-L6-v2",
        data="Python standard-library docstrings: each documented function's one-line summary (query) "
        "against the rest of its docstring (document), ~80/20 train/held-out split by a stable hash",
        build_options={"max_length": 128},
        fit_options={"epochs": 1, "batch_size": 32, "learning_rate": 5e-5, "loss": "MultipleNegativesRankingLoss"},
    ),
    "image-to-image": Demo(
        task="image-to-image",
        model="timm/resnet18",
        data="scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes): 1,200 to train, "
        "597 held out, each held-out image querying the others",
        build_options={"pretrained": False, "image_size": 48, "output_dim": 64},
        fit_options={
            "epochs": 3,
            "batch_size": 64,
            "samples_per_class": 8,
            "learning_rate": 1e-3,
            "loss": "TripletMarginLoss",
            "miner": "MultiSimilarityMiner",
        },
    ),
    "text-to-image": Demo(
        task="text-to-image",
        model="all-MiniLM-L6-v2+timm/resnet18",
        data="scikit-learn's digits with captions made from their labels ('a handwritten seven'), "
        "1,200 to train, 597 held out; a two-tower model: all-MiniLM-L6-v2 text tower + random-init "
        "ResNet-18 image tower, projected into one 64-d space",
        build_options={"output_dim": 64, "pretrained": True, "image_options": {"pretrained": False, "image_size": 48}},
        fit_options={"epochs": 3, "batch_size": 32, "learning_rate": 1e-3, "loss": "ClipLoss"},
    ),
}


def describe() -> str:
    """What each demo trains on, for ``finetuner demo --help``."""
    return "\n".join(f"{d.task}: model {d.model}; data: {d.data}." for d in DEMOS.values())


def _data(task: str) -> tuple[Any, Any]:
    from finetuner.demo import datasets

    if task == "text-to-text":
        return datasets.split_held_out(datasets.stdlib_docstring_pairs())
    if task == "image-to-image":
        return datasets.digits_labeled()
    return datasets.digits_captioned()


def _build(demo: Demo) -> Any:
    from finetuner.models.build import build_model, build_two_tower

    options = dict(demo.build_options)
    if "+" in demo.model:
        text, image = demo.model.split("+")
        return build_two_tower(text, image, output_dim=options["output_dim"], image_options=options["image_options"])
    return build_model(demo.model, **options)


def run_demo(task: str = "text-to-text", output_dir: str | Path = "finetuner-demo", **overrides: Any) -> Any:
    """Fine-tune the demo of ``task``; prints before/after metrics and writes the artifact and report."""
    from finetuner.errors import UnknownNameError
    from finetuner.report.metrics import compare
    from finetuner.training.fit import fit

    if task not in DEMOS:
        raise UnknownNameError("demo task", task, DEMOS)
    demo = DEMOS[task]
    started = time.perf_counter()
    train, held_out = _data(task)
    print(f"demo {task}: {demo.model} on {len(train)} training and {len(held_out)} held-out examples\n  data: {demo.data}")
    model = _build(demo)
    model = fit(model, train, held_out, output_dir=output_dir, **{**demo.fit_options, **overrides})
    headline = [name for name in model.metrics["after"] if name.rsplit("/", 1)[-1] in HEADLINE]
    pick = lambda metrics: {name: metrics[name] for name in headline}  # noqa: E731
    print(f"\nheld-out metrics before and after fine-tuning ({len(held_out)} examples):")
    print(compare(pick(model.metrics["before"]), pick(model.metrics["after"])))
    print(f"artifact: {Path(output_dir) / 'model'}  ({time.perf_counter() - started:.0f} s in all)")
    return model
