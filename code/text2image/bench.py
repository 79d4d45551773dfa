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
    print(f"render (smoke, fr + en, forced; {report.kernels} kernels at once, "
          f"{build.threads_text(report.threads)} each):")
    for run in report.runs:
        print(f"  {run.lang}  {run.name:<24} {run.seconds:7.1f} s  ({build.threads_text(run.threads)})")
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


def scoring() -> int:
    """The text-to-image benchmark's own cost: oracle and bookkeeping on the world's renders (goal: 1,000 images/s)."""
    from text2image.evaluate import benchmark as B
    from text2image.world.tensors import prompt_renders

    result = B.run(prompt_renders, "cpu", progress=False)
    rate = result["scoring_per_second"]
    print(f"scoring ({result['images']} images of the cpu set): {rate:,.0f} images/s "
          f"({'meets' if rate >= 1000 else 'under'} the 1,000 images/s goal)")
    return 0


def generate(names: list[str], profile: str | None = None) -> int:
    """``bench generate NAME ...``: the benchmark table of registered generators (cached next to their models)."""
    from text2image.evaluate import benchmark as B

    if not names:
        B.generator("world", profile)  # imports every module that registers generators
        print(f"error: name a generator; known generators: {', '.join(sorted(B.GENERATORS))}", file=sys.stderr)
        return 2
    for name in names:
        try:
            result = B.benchmark_named(name, profile)
        except KeyError as error:
            print(f"error: {error.args[0]}", file=sys.stderr)
            return 2
        print(report(name, result))
    return 0


def _share(share: dict) -> str:
    return f"{100 * share['p']:5.1f} % [{100 * share['lo']:5.1f}, {100 * share['hi']:5.1f}]"


def report(name: str, result: dict) -> str:
    """The benchmark of one generator as plain text, every proportion with its 95 % interval."""
    lines = [f"{name} (profile {result['profile']}, benchmark v{result['version']}, {result['images']} images)"]
    lines += [f"  {category:<22} {_share(share)}" for category, share in result["categories"].items()]
    lines.append(f"  {'overall':<22} {_share(result['overall'])}")
    lines += [f"  {'MG-' + k:<22} {_share(share)}" for k, share in result["mg"].items()]
    if result["relation"] is not None:
        lines.append(f"  {'relation | both found':<22} {_share(result['relation'])}")
    lines += [f"  {split:<22} {_share(share)}" for split, share in result["heldout"].items()]
    if result.get("frechet"):
        fd = result["frechet"]
        lines.append(f"  {'Fréchet (floor)':<22} {fd['distance']:.2e} ({fd['floor']:.2e})")
    lines.append(f"  {'failures':<22} " + ", ".join(f"{k} {v}" for k, v in result["failures"].items()))
    lines.append(f"  {'speed':<22} generator {result['images_per_second']:,.0f} images/s, "
                 f"scoring {result['scoring_per_second']:,.0f} images/s")
    return "\n".join(lines)


Benchmark = Union[Callable[[], int], str]

# name -> function, or "module:function" imported lazily.
BENCHMARKS: dict[str, Benchmark] = {
    "render": render,
    "world": world,
    "oracle": oracle,
    "scoring": scoring,
    # the training step of each recipe of the GAN / diffusion / flow-matching chapter against a bare PyTorch loop
    "generative-throughput": "text2image.recipes.generative:throughput_main",
    # sampling with each latent-diffusion pipeline against a bare denoising loop over the same networks
    "latent-throughput": "text2image.recipes.latent:throughput_main",
}


def _resolve(entry: Benchmark) -> Callable[[], int]:
    if callable(entry):
        return entry
    module, _, name = entry.partition(":")
    return getattr(importlib.import_module(module), name)


def run(what: list[str] | None = None, profile: str | None = None) -> int:
    """Run the named benchmarks (all by default); returns non-zero if one failed or is unknown.

    ``generate NAME ...`` runs the text-to-image benchmark of registered generators instead.
    """
    if what and what[0] == "generate":
        return generate(what[1:], profile)
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
