"""Run every benchmark (bench/bench_*.py), each side by side with its peer, and record the results.

    python bench/run.py            # all of them, full size
    python bench/run.py --quick    # tiny sizes, seconds (the test suite runs this)
    python bench/run.py text vision  # only bench_text.py and bench_vision.py

Writes bench/results.json and bench/results.md (or --out DIR): machine, versions, date, and
one row per comparison: ours, the peer, the ratio and the target. A benchmark that cannot run
here (no data, no CUDA GPU for bench_gpu.py) gives a SKIPPED row. Dated runs made some other
way are kept, as records, under bench/runs/.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import sys
import time
import traceback
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGES = ("finetuner-core", "torch", "torchvision", "timm", "transformers", "sentence-transformers", "onnxruntime")


def machine() -> dict[str, str]:
    import torch

    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = info.get("flags", "").split()
    return {
        "cpu": info.get("model name", platform.processor()),
        "cpu_flags": " ".join(f for f in flags if f.startswith(("amx", "avx512_bf16", "avx512f"))),
        "threads": str(torch.get_num_threads()),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "python": platform.python_version(),
    }


def versions() -> dict[str, str]:
    found = {}
    for package in PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"bench_{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def benchmark_names(only: list[str]) -> list[str]:
    """The benchmarks to run: ``only``, or every bench/bench_*.py by the part of its name after ``bench_``."""
    return only or sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def markdown(report: dict) -> str:
    lines = [
        f"Run {report['date']} on {report['machine']['cpu']} ({report['machine']['threads']} threads; "
        f"{report['machine']['cpu_flags'] or 'no AMX/AVX512 flags'}; GPU: {report['machine']['gpu']}).",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + ".",
        "",
        "| benchmark | ours | peer | unit | ratio | target | notes |",
        "|---|---:|---:|---|---:|---|---|",
    ]
    for row in report["results"]:
        cells = [
            row.get("benchmark", ""),
            _fmt(row.get("ours")),
            _fmt(row.get("peer")),
            row.get("unit", ""),
            _fmt(row.get("ratio")),
            row.get("target", ""),
            row.get("notes", ""),
        ]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("only", nargs="*", help="benchmark names (the part after bench_), default all")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the scripts run, figures mean nothing")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for results.json and results.md")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    names = benchmark_names(args.only)
    results, failures = [], []
    for name in names:
        started = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            rows = load(name).run(quick=args.quick)
        except Exception:
            traceback.print_exc()
            failures.append(name)
            rows = [{"benchmark": name, "notes": "FAILED: " + traceback.format_exc().strip().splitlines()[-1]}]
        for row in rows:
            print("   ", json.dumps(row), flush=True)
        results.extend(rows)
        print(f"   ({time.perf_counter() - started:.0f} s)", flush=True)
    report = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "machine": machine(),
        "versions": versions(),
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(report))
    print(markdown(report))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
