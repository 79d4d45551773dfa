"""``python -m text2image bench [name ...]``: the timings the issues ask for, one registry.

Each benchmark is a function that prints its own lines and returns an exit
status. Register new ones in ``BENCHMARKS`` below: either a function here, or
a ``"module:function"`` string imported only when that benchmark runs (so a
missing or half-written module never breaks the others).
"""

from __future__ import annotations

import importlib
import io
import sys
import time
from typing import Callable, Union

from text2image import paths


def render() -> int:
    """Smoke render of every chapter of both editions, forced; time per chapter and total (goal < 2 min)."""
    from text2image.book import build
    from text2image.book.errors import BookError

    started = time.perf_counter()
    try:
        report = build.run("smoke", langs=("fr", "en"), force=True, render=True, root=paths.repo_root(),
                           out=io.StringIO())  # the benchmark prints its own table
    except BookError as error:
        print(f"render: error: {error}", file=sys.stderr)
        return 1
    total = time.perf_counter() - started
    print("render (smoke, fr + en, forced):")
    for run in report.runs:
        print(f"  {run.lang}  {run.name:<24} {run.seconds:7.1f} s")
    print(f"  preview{'':<22} {report.render_seconds:7.1f} s")
    verdict = "ok" if total < 120 else "over the 2-minute goal"
    print(f"  total{'':<24} {total:7.1f} s  ({verdict})")
    return 0


def world() -> int:
    """Captioned scenes with masks per second at 32 and 64 px (goal: 2,000/s at 32 px)."""
    from text2image.world.bench import bench_generation

    rate = bench_generation()[32]
    print(f"  32 px: {'ok' if rate >= 2000 else 'under'} the 2,000 scenes/s goal")
    return 0


def oracle() -> int:
    """Exact recovery of 10,000 clean test scenes at 32 and 64 px (goal: 99.9%), and under degradations."""
    from text2image.world.bench import bench_oracle

    results = bench_oracle()
    for resolution, accuracy in results.items():
        print(f"  {resolution} px: {'ok' if accuracy['clean'] >= 0.999 else 'under'} the 99.9% goal")
    return 0


Benchmark = Union[Callable[[], int], str]

# name -> function, or "module:function" imported lazily.
BENCHMARKS: dict[str, Benchmark] = {
    "render": render,
    "world": world,
    "oracle": oracle,
}


def _resolve(entry: Benchmark) -> Callable[[], int]:
    if callable(entry):
        return entry
    module, _, name = entry.partition(":")
    return getattr(importlib.import_module(module), name)


def run(what: list[str] | None = None) -> int:
    """Run the named benchmarks (all by default); returns non-zero if one failed or is unknown."""
    names = list(what or BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"error: unknown benchmark(s) {', '.join(unknown)}; choose from: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    status = 0
    for name in names:
        try:
            function = _resolve(BENCHMARKS[name])
        except (ImportError, AttributeError) as error:
            print(f"{name}: not available yet ({error})")
            status = status or (1 if what else 0)  # asked for by name: fail; part of "all": report and go on
            continue
        status = int(function() or 0) or status
    return status
