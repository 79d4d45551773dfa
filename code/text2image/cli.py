"""Command line: ``python -m text2image <command>``."""

from __future__ import annotations

import argparse
import sys

from text2image import profiles


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
    try:
        for name in names:
            folder = recipes.train(name, args.profile, device=args.device)
            print(f"{name}: checkpoint written to {folder}")
    except recipes.UnknownRecipe as error:
        print(f"error: {error.args[0]}", file=sys.stderr)
        return 2
    return 0


def _bench(args: argparse.Namespace) -> int:
    from text2image.bench import run

    return run(args.what, args.profile)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m text2image", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    book = commands.add_parser("book", help="execute the chapters, check them, and render the book")
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
    book.add_argument("--debug", action="store_true",
                      help="print the traceback of an error or of Ctrl-C (also: TEXT2IMAGE_DEBUG=1)")
    book.set_defaults(func=_book)

    train = commands.add_parser("train", help="(re)train models and write their checkpoints")
    train.add_argument("name", nargs="+", help="recipe names, or 'all'")
    train.add_argument("--profile", choices=profiles.PROFILES, default=None,
                       help="recipe to use (default: $TEXT2IMAGE_PROFILE, else cpu)")
    train.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    train.set_defaults(func=_train)

    bench = commands.add_parser("bench", help="print the project's timings, or 'generate NAME' for a generator's benchmark")
    bench.add_argument("what", nargs="*", help="benchmarks to run (default: all), or: generate NAME ...")
    bench.add_argument("--profile", choices=profiles.PROFILES, default=None,
                       help="profile of the generator's benchmark (default: $TEXT2IMAGE_PROFILE, else cpu)")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except profiles.ProfileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
