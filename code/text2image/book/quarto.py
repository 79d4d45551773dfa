"""Real Quarto, where it is installed: the commands that render both editions, and their environment.

``make quarto`` (``python -m text2image.book.quarto``) and the runner both use
these. One ``quarto render`` per edition: ``--profile fr`` (Quarto completes it
to ``fr,cpu`` from ``profile.group``), or ``--profile fr,smoke`` / ``fr,gpu``.

Why the environment is changed: Quarto sets a variable from
``_environment-<profile>`` only where it is not set already
(``src/quarto-core/dotenv.ts``), so a ``TEXT2IMAGE_PROFILE`` or
``TEXT2IMAGE_LANG`` left in the shell would beat the profile's own file; they
are removed. ``QUARTO_PYTHON`` is this interpreter, so the kernels run the
project's environment rather than whatever ``python3`` Quarto finds first.

Why smoke gets ``--output-dir``: the language profile comes first in
``--profile fr,smoke`` and the first profile wins a merge
(``src/project/project-profile.ts``), so ``_quarto-smoke.yml`` cannot move the
output away from ``_book/fr``; the command line can
(``project-context.ts``: ``flags.outputDir`` replaces ``project.output-dir``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterable, TextIO

from text2image import paths, profiles

LANGS = ("fr", "en")
SMOKE_OUTPUT = "build/smoke/quarto"  # ignored by git, like every smoke output
CLEARED = ("TEXT2IMAGE_PROFILE", "TEXT2IMAGE_LANG")
ABSENT = ("quarto not found on the PATH: nothing rendered with Quarto "
          "(conda env create -f environment.yml brings it; see the README)")


def profile_names(lang: str, profile: str) -> str:
    """The ``--profile`` argument of one edition: ``fr`` for the default compute profile, else ``fr,smoke``."""
    return lang if profile == profiles.DEFAULT else f"{lang},{profile}"


def commands(profile: str, langs: Iterable[str] = LANGS, quarto: str = "quarto") -> list[list[str]]:
    """One ``quarto render`` per edition, in the book's order of editions."""
    out = []
    for lang in [lang for lang in LANGS if lang in set(langs)]:
        command = [quarto, "render", "--profile", profile_names(lang, profile)]
        if profile == "smoke":
            command += ["--output-dir", f"{SMOKE_OUTPUT}/{lang}"]
        out.append(command)
    return out


def environment(base: dict[str, str] | None = None, python: str | None = None) -> dict[str, str]:
    """The environment Quarto runs with: ``QUARTO_PYTHON`` set, the book's own switches left to its files."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in CLEARED}
    env["QUARTO_PYTHON"] = python or sys.executable
    return env


def render(root: Path, profile: str, langs: Iterable[str] = LANGS, out: TextIO | None = None) -> int:
    """Run the commands in ``root``; the exit status of the first that fails, else 0 (also when Quarto is absent)."""
    out = out or sys.stdout
    quarto = shutil.which("quarto")
    if quarto is None:
        print(ABSENT, file=out, flush=True)
        return 0
    for command in commands(profile, langs, quarto):
        print("quarto " + " ".join(command[1:]), file=out, flush=True)
        result = subprocess.run(command, cwd=root, env=environment())
        if result.returncode != 0:
            return result.returncode
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m text2image.book.quarto [--profile P]``; the profile defaults to ``TEXT2IMAGE_PROFILE``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m text2image.book.quarto", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=profiles.PROFILES, default=None)
    parser.add_argument("--lang", nargs="+", choices=LANGS, default=list(LANGS))
    args = parser.parse_args(argv)
    try:
        profile = args.profile or profiles.current()
    except profiles.ProfileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return render(paths.repo_root(), profile, args.lang)


if __name__ == "__main__":
    sys.exit(main())
