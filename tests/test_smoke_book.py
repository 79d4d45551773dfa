"""The real book, both editions, in the smoke profile: it runs, every figure exists, the preview works.

This is the test that catches a chapter broken by a change in the package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bookkit import browser_check, chromium
from text2image.book import build, project

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke_run():
    env = {**os.environ, "TEXT2IMAGE_ROOT": str(ROOT)}
    env.pop("TEXT2IMAGE_PROFILE", None)
    result = subprocess.run(
        [sys.executable, "-m", "text2image", "book", "--profile", "smoke", "--force"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    return result


def test_smoke_book_builds(smoke_run):
    assert smoke_run.returncode == 0, smoke_run.stdout[-3000:] + smoke_run.stderr[-5000:]


def test_every_figure_label_has_its_png(smoke_run):
    assert smoke_run.returncode == 0
    docs = build.static_checks(project.load(ROOT))
    for lang, chapters in docs.items():
        for doc in chapters:
            for cell in doc.code_cells():
                if (cell.label or "").startswith("fig-") and cell.option("eval") is not False:
                    png = ROOT / "build/smoke/figures" / lang / f"{cell.label}.png"
                    assert png.is_file() and png.read_bytes().startswith(b"\x89PNG"), png


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed (make browser)")
def test_smoke_preview_in_headless_chromium(smoke_run):
    assert smoke_run.returncode == 0
    result = browser_check(ROOT / "build/smoke/preview")
    assert result["problems"] == [], json.dumps(result, indent=1)
    assert result["pages"] == 2 * len(project.load(ROOT).names)
