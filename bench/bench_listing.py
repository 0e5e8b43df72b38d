"""Listing latency: a cold `finetuner models` process against a cold `python -c "import torch"`.

Both run as fresh processes with every installed plugin, alternating, several times; the
medians are compared. Targets: listing under 0.5 s and under a third of the torch import.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "finetuner models": [sys.executable, "-m", "finetuner", "models"],
    "import torch": [sys.executable, "-c", "import torch"],
}


def _seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "FINETUNER_DISABLE_PLUGINS": "broken"})
    return time.perf_counter() - started


def run(quick: bool = False) -> list[dict]:
    repeats = 1 if quick else 9
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(repeats):
        for name, command in COMMANDS.items():
            times[name].append(_seconds(command))
    ours, torch_import = (statistics.median(times[name]) for name in COMMANDS)
    return [
        {
            "benchmark": f"cold `finetuner models` vs cold `import torch` (median of {repeats})",
            "ours": ours,
            "peer": torch_import,
            "unit": "s",
            "ratio": ours / torch_import,
            "target": "< 0.5 s and ratio < 0.33",
            "notes": "every installed plugin listed; lower is better",
        }
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
