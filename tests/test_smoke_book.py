"""The real book, both editions, in the smoke profile: it runs, every figure exists, the preview works.

This is the test that catches a chapter broken by a change in the package, and
the one that looks at the book as Quarto would show it: no Python escape in
the text, no progress bar or library message, French cross-reference words,
an unnumbered home page, and nothing changed in git by the render.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bookkit import browser_check, chromium
from text2image.book import build, project

ROOT = Path(__file__).resolve().parents[1]


def git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def smoke_run():
    env = {**os.environ, "TEXT2IMAGE_ROOT": str(ROOT)}
    env.pop("TEXT2IMAGE_PROFILE", None)
    before = git_status()
    result = subprocess.run(
        [sys.executable, "-m", "text2image", "book", "--profile", "smoke", "--force"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    result.git_before, result.git_after = before, git_status()
    return result


def pages(lang: str) -> dict[str, str]:
    """``{chapter: visible text}`` of the smoke preview of one edition."""
    folder = ROOT / "build/smoke/preview" / lang
    return {p.stem: html.unescape(re.sub(r"<[^>]+>", "", p.read_text())) for p in sorted(folder.glob("*.html"))}


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


def test_the_render_changes_nothing_in_git(smoke_run):
    assert smoke_run.returncode == 0
    assert smoke_run.git_after == smoke_run.git_before


def test_no_chapter_cell_writes_to_stderr(smoke_run):
    """Quarto prints a cell's stderr in the page: progress bars, loading messages and warnings included."""
    assert smoke_run.returncode == 0
    found = []
    for path in sorted((ROOT / "build/smoke").glob("[fe][rn]/*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "stream" and output.get("name") == "stderr":
                    found.append(f"{path.parent.name}/{path.stem}: {''.join(output['text'])[:80]!r}")
    assert found == []


def test_the_preview_text_has_no_python_escape_and_the_right_words(smoke_run):
    assert smoke_run.returncode == 0
    names = project.load(ROOT).names
    for lang in ("fr", "en"):
        text = pages(lang)
        assert sorted(text) == sorted(names)
        escaped = {name: re.findall(r".{20}\\+u[0-9a-fA-F]{4}.{10}", body) for name, body in text.items()}
        assert {name: hits for name, hits in escaped.items() if hits} == {}
        joined = "\n".join(text.values())
        assert "it/s]" not in joined and "Loading weights" not in joined
    fr, en = "\n".join(pages("fr").values()), "\n".join(pages("en").values())
    assert "Tableau\u00a0" in fr and not re.search(r"\bTable\u00a0\d", fr)
    assert re.search(r"\bTable\u00a0\d", en) and "Tableau" not in en


def test_the_home_page_is_unnumbered_and_chapters_count_from_1(smoke_run):
    assert smoke_run.returncode == 0
    for lang, home in (("fr", "Préface"), ("en", "Preface")):
        page = (ROOT / "build/smoke/preview" / lang / "index.html").read_text()
        sidebar = re.findall(r'<li><a href="(\w+)\.html"[^>]*>(?:<span class="chapter-number">(\d+)</span> )?([^<]*)</a>',
                             page)
        assert sidebar[0] == ("index", "", home)
        assert sidebar[-2] == ("glossary", "", "Glossaire" if lang == "fr" else "Glossary")
        assert sidebar[-1] == ("references", "", "Références" if lang == "fr" else "References")
        assert [number for _, number, _ in sidebar[1:-2]] == [str(n) for n in range(1, len(sidebar) - 2)]
        other = "en" if lang == "fr" else "fr"
        clip = (ROOT / "build/smoke/preview" / lang / "clip.html").read_text()
        assert f'class="other-lang" href="../{other}/clip.html"' in clip


def test_the_build_log_holds_the_runners_lines_only(smoke_run):
    """No kernel's own log (``[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel``) and no traceback."""
    assert smoke_run.returncode == 0
    assert "[IPKernelApp]" not in smoke_run.stdout + smoke_run.stderr
    assert "Traceback" not in smoke_run.stderr
    timings = [line for line in smoke_run.stdout.splitlines() if re.match(r"^(fr|en)  \w+\s+executed", line)]
    assert timings and all(line.endswith("(1 thread)") for line in timings)


def test_the_references_page_lists_the_bibliography_and_chapters_link_to_it(smoke_run):
    assert smoke_run.returncode == 0
    from text2image.book import checks

    keys = checks.bibliography(ROOT, project.load(ROOT).config)
    for lang, title in (("fr", "Références"), ("en", "References")):
        page = (ROOT / "build/smoke/preview" / lang / "references.html").read_text()
        assert f">{title}</h1>" in page or f"{title}</h1>" in page
        assert all(f'id="ref-{key}"' in page for key in keys), [k for k in keys if f'id="ref-{key}"' not in page]
        for name in project.load(ROOT).names:  # a citation anywhere leads to the references page
            text = (ROOT / "build/smoke/preview" / lang / f"{name}.html").read_text()
            assert 'href="#ref-' not in text or name == "references"
