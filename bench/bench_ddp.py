"""Scale-out on CPU: fit() on 2 gloo processes x 1 thread against 1 process x 2 threads, the same global batch.

all-MiniLM-L6-v2, MultipleNegativesRankingLoss (scale 20), STSb train pairs, max length 128,
seed 0, global batch 32: 2 processes x 16 under ``torchrun --standalone --nproc_per_node=2``
(``OMP_NUM_THREADS=1``) against one process x 32 with 2 threads. Both draw the same global
batches (the samplers give each rank its slice). Each configuration runs in fresh processes;
a callback on rank 0 records each step's end, and the rate is 32 * N / (end of step W+N - end
of step W). The two configurations alternate, and each figure is the median of the rounds;
fp32 and ``precision="auto"``. This is not a claim of speed-up on a CPU, where both use the
same cores: it shows that the DDP path works and what it costs (the gradient all-reduce, the
embedding all-gather, two processes' overheads).

    HF_HUB_OFFLINE=1 python bench/bench_ddp.py [--quick]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchkit import MINILM as MODEL
from benchkit import data_root, mnrl_steps

HERE = Path(__file__).resolve()
STSB_TRAIN = data_root() / "stsb" / "train.csv"
GLOBAL_BATCH = 32
SCALE = 20.0
PROCESSES = 2  # and threads of the single process: the same cores either way


def pairs(count: int) -> tuple[list[str], list[str]]:
    """The first ``count`` STSb train pairs (sentence1 = query, sentence2 = document)."""
    with open(STSB_TRAIN, newline="", encoding="utf-8") as f:
        rows = [row for _, row in zip(range(count), csv.reader(f), strict=False)]
    return [a for a, _, _ in rows], [b for _, b, _ in rows]


def train(out: Path, batch_size: int, steps: int, precision: str, max_length: int) -> None:
    """One fit() for ``steps`` steps (on every rank under torchrun); rank 0 writes each step's end time to ``out``."""
    queries, documents = pairs(int(steps * GLOBAL_BATCH * 1.2) + GLOBAL_BATCH)  # a margin for batches without repeats
    clock = mnrl_steps(
        queries, documents, steps, batch_size=batch_size, max_length=max_length, scale=SCALE, seed=0, precision=precision
    )
    if int(os.environ.get("RANK", "0")) == 0:
        out.write_text(json.dumps([wall for wall, _ in clock.steps]))


def rate(processes: int, warmup: int, steps: int, precision: str, max_length: int, here: bool = False) -> float:
    """Pairs/s of ``processes`` gloo processes x ``PROCESSES // processes`` threads, each a fresh launch
    (``here``: one process, this one, as it is; quick runs save a launch that way)."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "ends.json"
        if here:
            train(out, GLOBAL_BATCH, warmup + steps, precision, max_length)
            return _pairs_per_s(json.loads(out.read_text()), warmup, steps)
        worker = [str(HERE), "--worker", str(out), "--batch-size", str(GLOBAL_BATCH // processes), "--steps", str(warmup + steps)]
        worker += ["--precision", precision, "--max-length", str(max_length)]
        launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else []
        env = {**os.environ, "OMP_NUM_THREADS": str(PROCESSES // processes)}
        done = subprocess.run([sys.executable, *launcher, *worker], env=env, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:  # a rank's own traceback, before torchrun's
            failure = done.stderr[done.stderr.find("Traceback") :] if "Traceback" in done.stderr else done.stderr
            raise RuntimeError(f"{processes} process(es) exited with {done.returncode}: {failure.strip()[:3000]}")
        return _pairs_per_s(json.loads(out.read_text()), warmup, steps)


def _pairs_per_s(ends: list[float], warmup: int, steps: int) -> float:
    return GLOBAL_BATCH * steps / (ends[warmup + steps - 1] - ends[warmup - 1])


def run(quick: bool = False) -> list[dict]:
    if not STSB_TRAIN.is_file():
        return [{"benchmark": "fit() on 2 gloo processes vs 1 process", "notes": f"SKIPPED: {STSB_TRAIN} is absent"}]
    warmup, steps, rounds = (1, 1, 1) if quick else (5, 20, 3)
    max_length = 32 if quick else 128
    rows = []
    for precision in ("fp32",) if quick else ("fp32", "auto"):
        rates: dict[int, list[float]] = {PROCESSES: [], 1: []}
        for round_ in range(rounds):
            for processes in (PROCESSES, 1) if round_ % 2 == 0 else (1, PROCESSES):
                rates[processes].append(rate(processes, warmup, steps, precision, max_length, here=quick and processes == 1))
        ddp, single = statistics.median(rates[PROCESSES]), statistics.median(rates[1])
        rows.append(
            {
                "benchmark": f"fit() {MODEL} MNRL, global batch {GLOBAL_BATCH}, {precision}: "
                f"{PROCESSES} gloo processes x 1 thread vs 1 process x {PROCESSES} threads",
                "ours": round(ddp, 1),
                "peer": round(single, 1),
                "unit": "pairs/s",
                "ratio": round(ddp / single, 3),
                "target": "reported",
                "notes": f"steps {warmup + 1}-{warmup + steps}, max length {max_length}, median of {rounds} alternating "
                f"rounds (DDP {', '.join(f'{r:.1f}' for r in rates[PROCESSES])}; single {', '.join(f'{r:.1f}' for r in rates[1])}); "
                f"load {os.getloadavg()[0]:.1f} at the end"
                + (" (quick: the single process is the caller's own; figures mean nothing)" if quick else ""),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, the figures mean nothing")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--precision", help=argparse.SUPPRESS)
    parser.add_argument("--max-length", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        train(args.worker, args.batch_size, args.steps, args.precision, args.max_length)
        return 0
    for row in run(quick=args.quick):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
