"""Run every CPU benchmark and write their figures into one file, benchmarks/RESULTS.md.

Each benchmark runs as its own process, in the order below; what it prints is copied as is
(the growth benchmark prints a Markdown table, the others plain lines). The header names
the machine and the commit, since figures from different machines do not compare.
Usage: python benchmarks/run_all.py [--out benchmarks/RESULTS.md] [--growth-args ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLAIN = [
    "bench_grid.py", "bench_synth.py", "bench_loader.py", "bench_feature_cache.py",
    "bench_serve.py",
]  # fmt: skip


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def commit() -> str:
    result = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=HERE, capture_output=True, text=True
    )
    return result.stdout.strip() or "unknown"


def run(script: str, args: list[str]) -> tuple[str, float]:
    """The benchmark's standard output and its wall time; its progress goes to our stderr."""
    print(f"running {script} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(HERE / script), *args], stdout=subprocess.PIPE, text=True
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{script} failed with exit status {result.returncode}")
    return result.stdout.strip(), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--growth-args", default="", help="passed to bench_growth.py")
    args = parser.parse_args()

    sections = []
    growth, seconds = run("bench_growth.py", shlex.split(args.growth_args))
    sections.append(
        f"## Growth with the number of locations (`bench_growth.py`, {seconds / 60:.0f} min)\n\n"
        f"{growth}\n"
    )
    sizing, seconds = run("bench_sizing.py", [])
    sections.append(
        f"## Sizing a LUMEN run (`bench_sizing.py`, {seconds / 60:.0f} min)\n\n"
        f"```text\n{sizing}\n```\n"
    )
    for script in PLAIN:
        output, seconds = run(script, [])
        sections.append(f"## `{script}` ({seconds:.0f} s)\n\n```text\n{output}\n```\n")
    header = (
        "# Benchmark results\n\n"
        f"Written by `make bench` on {dt.date.today().isoformat()}, commit {commit()}, "
        f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}. "
        "The development machine's cores are shared with other work, so timings vary from run "
        "to run by tens of percent; memory figures are steadier.\n"
    )
    args.out.write_text(header + "\n" + "\n".join(sections))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
