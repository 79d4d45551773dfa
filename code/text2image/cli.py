"""Command line: ``python -m text2image <command>``.

A failure the reader can fix (a damaged checkpoint, a locked run, an unknown
name, nowhere to write) and Ctrl-C print one line and exit non-zero; the
traceback is shown only with ``--debug`` or ``TEXT2IMAGE_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import os
import sys

from text2image import paths, profiles

DEBUG_ENV = "TEXT2IMAGE_DEBUG"
# Errors that carry their own one-line message: (module, class names), looked up only once loaded.
READABLE_ERRORS = (("text2image.checkpoints", ("CheckpointError",)),
                   ("text2image.recipes", ("RunLocked", "UnknownRecipe")),
                   ("text2image.text", ("UnknownWordError", "CaptionError")))


def _book(args: argparse.Namespace) -> int:
    from text2image.book.build import build

    return build(
        profile=args.profile,
        langs=args.lang,
        chapters=args.chapter,
        force=args.force,
        render=not args.no_render,
        debug=args.debug,
    )


def _train(args: argparse.Namespace) -> int:
    from text2image import recipes

    names = sorted(recipes.load_all()) if args.name == ["all"] else args.name
    if not names:
        print("no recipe is registered yet")
        return 1
    for name in names:
        recipes.get(name)  # an unknown name fails before anything trains
    from text2image.train import is_main_process

    for name in names:
        folder = recipes.train(name, args.profile, device=args.device, wait=args.wait)
        if is_main_process(args.device):  # under accelerate launch, the first process speaks for all
            print(f"{name}: checkpoint written to {folder}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from text2image.bench import run

    return run(args.what, args.profile)


def _checkpoints(args: argparse.Namespace) -> int:
    from text2image import checkpoints

    root = paths.checkpoints_dir()
    folders = [root / name for name in args.name] if args.name else checkpoints.shipped_folders(root)
    failed = 0
    for folder in folders:
        label = folder.relative_to(root).as_posix() if folder.is_relative_to(root) else str(folder)
        try:
            if args.action == "stamp":
                changed = checkpoints.stamp(folder, force=args.force)
                print(f"{label}: {'digests recorded' if changed else 'digests already recorded'}")
            else:
                checkpoints.verify(folder)
                print(f"{label}: ok")
        except checkpoints.CheckpointError as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _check(args: argparse.Namespace) -> int:
    from text2image.recipes import check

    return check.main(args.names or None, batch_size=args.batch)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m text2image", description=__doc__)
    parser.add_argument("--debug", action="store_true", help=f"show tracebacks (or set {DEBUG_ENV}=1)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True)

    book = commands.add_parser("book", parents=[common],
                               help="execute the chapters, check them, and render the book")
    book.add_argument("--profile", choices=profiles.PROFILES, default=None,
                      help="compute profile (default: $TEXT2IMAGE_PROFILE, else cpu)")
    book.add_argument("--lang", nargs="+", choices=("fr", "en"), default=["fr", "en"],
                      help="editions to build (default: both)")
    book.add_argument("--chapter", nargs="+", default=None, metavar="NAME",
                      help="only these chapters (file names without .qmd)")
    book.add_argument("--force", action="store_true",
                      help="execute chapters even when nothing changed since their last run")
    book.add_argument("--no-render", action="store_true",
                      help="execute and check only; skip quarto render / the HTML preview")
    book.set_defaults(func=_book)

    train = commands.add_parser("train", parents=[common], help="(re)train models and write their checkpoints")
    train.add_argument("name", nargs="+", help="recipe names, or 'all'")
    train.add_argument("--profile", choices=profiles.PROFILES, default=None,
                       help="recipe to use (default: $TEXT2IMAGE_PROFILE, else cpu)")
    train.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    train.add_argument("--wait", action="store_true",
                       help="if another process is training the same recipe, wait for it instead of stopping")
    train.set_defaults(func=_train)

    bench = commands.add_parser("bench", parents=[common],
                                help="print the project's timings, or 'generate NAME' for a generator's benchmark")
    bench.add_argument("what", nargs="*", help="benchmarks to run (default: all), or: generate NAME ...")
    bench.add_argument("--profile", choices=profiles.PROFILES, default=None,
                       help="profile of the generator's benchmark (default: $TEXT2IMAGE_PROFILE, else cpu)")
    bench.set_defaults(func=_bench)

    ckpt = commands.add_parser("checkpoints", parents=[common],
                               help="'stamp': record the weights' digests in the manifests; 'verify': check them")
    ckpt.add_argument("action", choices=("stamp", "verify"))
    ckpt.add_argument("name", nargs="*", help="checkpoints under data/checkpoints (default: all)")
    ckpt.add_argument("--force", action="store_true",
                      help="stamp: replace digests that no longer match (weights replaced on purpose)")
    ckpt.set_defaults(func=_checkpoints)

    check = commands.add_parser("check", parents=[common],
                                help="'gpu-recipes': build every gpu recipe at full size, one step, one "
                                     "evaluation and a save/load round trip, on the CPU")
    check.add_argument("what", choices=("gpu-recipes",))
    check.add_argument("names", nargs="*", help="only these recipes (default: all)")
    check.add_argument("--batch", type=int, default=None, metavar="N",
                       help="one step with a batch of N instead of the gpu batch (the model keeps its full size)")
    check.set_defaults(func=_check)
    return parser


def _readable(error: BaseException) -> bool:
    kinds: list[type] = [profiles.ProfileError, paths.NothingWritable]
    for module, names in READABLE_ERRORS:
        if module in sys.modules:
            kinds += [getattr(sys.modules[module], name) for name in names if hasattr(sys.modules[module], name)]
    return isinstance(error, tuple(kinds))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as error:
        if debug:
            raise
        print(str(error) or "interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if debug or not _readable(error):
            raise
        message = str(error.args[0]) if isinstance(error, LookupError) and error.args else str(error)
        print(f"error: {message}", file=sys.stderr)
        return 2 if isinstance(error, (profiles.ProfileError, LookupError)) else 1


if __name__ == "__main__":
    raise SystemExit(main())
