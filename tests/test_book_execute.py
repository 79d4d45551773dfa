"""The chapter runner with real kernels, on tiny throwaway books (a few seconds each)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from bookkit import browser_check, chromium, write_book
from text2image.book import build, quarto
from text2image.book.execute import quarto_environment

REPO = Path(__file__).resolve().parents[1]

FIG = '''\
```{python}
#| label: fig-line
#| fig-cap: "%s"
#| fig-alt: "%s"
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(2, 1.5))
ax.plot([0, 1, 2], [0, 1, SLOPE])
```
'''


def chapter(lang: str, slope: str = "4") -> str:
    caption = "Une droite" if lang == "fr" else "A line"
    title = "Une droite" if lang == "fr" else "A line"
    return (f"# {title} {{#sec-line}}\n\n```{{python}}\nSLOPE = {slope}\nname = 'deux'\n```\n\n"
            f"Texte `{{python}} name` et `{{python}} SLOPE * 2`, voir @fig-line et @tbl-nums.\n\n"
            + FIG % (caption, caption) +
            "\n## Nombres {#sec-nums}\n\n```{python}\n#| label: tbl-nums\n#| tbl-cap: " + caption +
            "\nfrom IPython.display import Markdown\nMarkdown('| a | b |\\n|---|---|\\n| 1 | 2 |')\n```\n")


INFO = '''\
# Info

Back to @sec-line, see @fig-line.

```{python}
import os, sys
print(sys.executable)
print(os.getcwd())
print(os.environ["TEXT2IMAGE_PROFILE"], os.environ["TEXT2IMAGE_LANG"], os.environ["PYTHONHASHSEED"])
print(os.environ["TEXT2IMAGE_ROOT"])
```
'''


def tiny_book(root: Path, slope: str = "4", extra: str = "") -> Path:
    return write_book(root, {
        "fr": {"line": chapter("fr", slope) + extra, "info": INFO},
        "en": {"line": chapter("en", slope) + extra, "info": INFO},
    })


def run(root: Path, capsys, **kwargs) -> tuple[int, str, str]:
    kwargs = {"profile": "smoke", "render": False, **kwargs}
    code = build.build(root=root, **kwargs)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """One smoke build of the tiny book with its preview, shared by the read-only tests."""
    root = tiny_book(tmp_path_factory.mktemp("book"))
    assert build.build(profile="smoke", root=root) == 0
    return root


def test_kernel_runs_in_chapter_folder_with_venv_python_and_env(rendered):
    nb = nbformat.read(rendered / "build/smoke/fr/info.ipynb", as_version=4)
    lines = "".join(nb.cells[-1].outputs[0]["text"]).splitlines()
    assert Path(lines[0]).resolve() == Path(sys.executable).resolve()
    assert lines[1] == str(rendered / "book" / "fr")
    assert lines[2] == "smoke fr 0"
    assert lines[3] == str(rendered)


def test_inline_results_are_kept_as_quarto_keeps_them(rendered):
    nb = nbformat.read(rendered / "build/smoke/en/line.ipynb", as_version=4)
    kept = [c.metadata.get("user_expressions") for c in nb.cells if c.cell_type == "markdown"]
    kept = [k for k in kept if k]
    assert [k["expression"] for k in kept[0]] == ["name", "SLOPE * 2"]
    assert kept[0][0]["result"]["data"]["text/plain"] == "'deux'"
    page = (rendered / "build/smoke/preview/en/line.html").read_text()
    assert "Texte deux et 8, voir" in page


def test_smoke_figures_go_to_build_not_to_the_book(rendered):
    for lang in ("fr", "en"):
        png = rendered / "build/smoke/figures" / lang / "fig-line.png"
        assert png.read_bytes().startswith(b"\x89PNG")
    assert not (rendered / "figures").exists()


def test_cpu_profile_writes_the_book_figures(tmp_path, capsys):
    root = tiny_book(tmp_path)
    code, out, err = run(root, capsys, profile="cpu", langs=["en"], chapters=["line"])
    assert code == 0, err
    assert (root / "figures/en/fig-line.png").is_file()
    assert not (root / "build/smoke").exists()
    assert re.search(r"^en  line\s+executed", out, re.M)


def test_freeze_skips_unchanged_chapters_and_force_reexecutes(tmp_path, capsys):
    root = tiny_book(tmp_path)
    code, out, _ = run(root, capsys, langs=["fr"])
    assert code == 0 and out.count("executed ") == 3
    code, out, _ = run(root, capsys, langs=["fr"])
    assert code == 0 and out.count("frozen ") == 3 and "executed " not in out.replace("0 chapter(s) executed", "")
    (root / "book/fr/info.qmd").write_text(INFO + "\nMore words.\n")
    (root / "book/en/info.qmd").write_text(INFO + "\nMore words.\n")
    code, out, _ = run(root, capsys, langs=["fr"])
    assert re.search(r"fr  info\s+executed", out) and re.search(r"fr  line\s+frozen", out)
    code, out, _ = run(root, capsys, langs=["fr"], force=True)
    assert code == 0 and out.count("executed ") == 3


def test_failing_cell_names_chapter_label_and_traceback_and_keeps_old_figures(tmp_path, capsys):
    root = tiny_book(tmp_path)
    assert run(root, capsys, langs=["fr"], chapters=["line"])[0] == 0
    figure = root / "build/smoke/figures/fr/fig-line.png"
    before = figure.read_bytes(), figure.stat().st_mtime_ns
    broken = tiny_book(root, slope="1 / 0")  # rewrites the chapters in place
    code, out, err = run(broken, capsys, langs=["fr"], force=True)
    assert code == 1
    assert "book/fr/line.qmd:3: the cell (lines 3-6) failed" in err
    assert "ZeroDivisionError" in err and "\x1b[" not in err
    assert (figure.read_bytes(), figure.stat().st_mtime_ns) == before
    # a failure inside a labelled cell names the label
    (root / "book/fr/line.qmd").write_text(chapter("fr").replace("ax.plot(", "ax.plott("))
    (root / "book/en/line.qmd").write_text(chapter("en").replace("ax.plot(", "ax.plott("))
    code, _, err = run(root, capsys, langs=["en"])
    assert code == 1 and "book/en/line.qmd:10: cell 'fig-line' (lines 10-17) failed" in err
    assert "AttributeError" in err
    assert (figure.read_bytes(), figure.stat().st_mtime_ns) == before


def test_figure_cell_must_show_exactly_one_image(tmp_path, capsys):
    root = tiny_book(tmp_path)
    for lang in ("fr", "en"):
        path = root / f"book/{lang}/line.qmd"
        path.write_text(path.read_text().replace("ax.plot([0, 1, 2], [0, 1, SLOPE])",
                                                 "ax.plot([0, 1])\nplt.figure(figsize=(1, 1)).gca().plot([1, 0])"))
    code, _, err = run(root, capsys, langs=["fr"])
    assert code == 1 and "book/fr/line.qmd:10: figure cell 'fig-line' displayed 2 images" in err
    assert not (root / "build/smoke/fr/line.json").exists()  # a bad chapter is not frozen


def test_two_renders_give_byte_identical_figures(tmp_path, capsys):
    root = tiny_book(tmp_path)
    assert run(root, capsys, langs=["en"], chapters=["line"])[0] == 0
    first = (root / "build/smoke/figures/en/fig-line.png").read_bytes()
    assert run(root, capsys, langs=["en"], chapters=["line"], force=True)[0] == 0
    assert (root / "build/smoke/figures/en/fig-line.png").read_bytes() == first


def test_preview_numbers_captions_and_links(rendered):
    fr = (rendered / "build/smoke/preview/fr/line.html").read_text()
    en = (rendered / "build/smoke/preview/en/line.html").read_text()
    info = (rendered / "build/smoke/preview/en/info.html").read_text()
    assert '<html lang="fr">' in fr and '<html lang="en">' in en
    assert 'href="#fig-line">Figure\u00a01.1</a>' in fr and 'href="#tbl-nums">Tableau\u00a01.1</a>' in fr
    assert 'href="#tbl-nums">Table\u00a01.1</a>' in en
    assert "<strong>Tableau\u00a01.1</strong>\u00a0: Une droite" in fr
    assert "<strong>Figure\u00a01.1</strong>: A line" in en
    assert 'href="line.html#sec-line">Chapter\u00a01</a>' in info and 'href="line.html#fig-line">Figure\u00a01.1</a>' in info
    assert '<span class="header-section-number">1.1</span>' in en
    assert 'href="../fr/line.html"' in en and 'href="../en/line.html"' in fr
    assert 'src="figures/fig-line.png"' in en and (rendered / "build/smoke/preview/en/figures/fig-line.png").is_file()
    assert "<table>" in en  # a Markdown output becomes a real table


def test_preview_is_cached(rendered, capsys):
    code, out, _ = run(rendered, capsys, render=True)
    assert code == 0 and "quarto not found" in out
    assert re.search(r"fr  preview\s+unchanged", out) and re.search(r"en  preview\s+unchanged", out)


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed (make browser)")
def test_preview_in_headless_chromium(rendered):
    result = browser_check(rendered / "build/smoke/preview")
    assert result["problems"] == [], json.dumps(result, indent=1)
    assert result["pages"] == 6 and result["images"] >= 2 and result["links"] > 10


FAKE_QUARTO = """#!/bin/sh
{{ echo "quarto $*"; echo "QUARTO_PYTHON=$QUARTO_PYTHON"; echo "TEXT2IMAGE_PROFILE=${{TEXT2IMAGE_PROFILE-unset}}"; \
  echo "TEXT2IMAGE_LANG=${{TEXT2IMAGE_LANG-unset}}"; echo "PWD=$PWD"; }} >> {log}
"""


def fake_quarto(tmp_path: Path, monkeypatch=None) -> tuple[Path, Path]:
    """A ``quarto`` on the PATH that records its arguments, environment and folder."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.txt"
    bin_dir.mkdir()
    (bin_dir / "quarto").write_text(FAKE_QUARTO.format(log=log))
    (bin_dir / "quarto").chmod(0o755)
    if monkeypatch:
        monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return bin_dir, log


def test_quarto_is_used_when_installed(tmp_path, capsys, monkeypatch):
    root = write_book(tmp_path / "book", {"fr": {"a": "# A\n"}, "en": {"a": "# A\n"}})
    _, log = fake_quarto(tmp_path, monkeypatch)
    monkeypatch.setenv("TEXT2IMAGE_LANG", "fr")
    code, out, err = run(root, capsys, render=True)
    assert code == 0, err
    assert log.read_text().splitlines() == [
        "quarto render --profile fr,smoke --output-dir build/smoke/quarto/fr", f"QUARTO_PYTHON={sys.executable}",
        "TEXT2IMAGE_PROFILE=unset", "TEXT2IMAGE_LANG=unset", f"PWD={root}",
        "quarto render --profile en,smoke --output-dir build/smoke/quarto/en", f"QUARTO_PYTHON={sys.executable}",
        "TEXT2IMAGE_PROFILE=unset", "TEXT2IMAGE_LANG=unset", f"PWD={root}",
    ]
    assert "quarto not found" not in out


@pytest.mark.parametrize("profile, names", [("cpu", ["fr", "en"]), ("gpu", ["fr,gpu", "en,gpu"])])
def test_make_quarto_runs_both_editions(tmp_path, profile, names):
    bin_dir, log = fake_quarto(tmp_path)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TEXT2IMAGE_PROFILE": profile,
           "TEXT2IMAGE_LANG": "en"}
    venv = Path(sys.executable).parent.parent  # -o: never (re)build that environment from a test
    result = subprocess.run(["make", "-s", "-o", f"{venv}/.installed", "quarto", f"VENV={venv}", f"PY={sys.executable}"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = log.read_text().splitlines()
    assert calls == [line for name in names for line in (
        f"quarto render --profile {name}", f"QUARTO_PYTHON={sys.executable}", "TEXT2IMAGE_PROFILE=unset",
        "TEXT2IMAGE_LANG=unset", f"PWD={REPO}")]


def test_make_quarto_says_in_one_line_that_quarto_is_absent(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("make", "sh", "env", "cat"):  # a PATH with the basics and no quarto
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    venv = Path(sys.executable).parent.parent
    result = subprocess.run([str(bin_dir / "make"), "-s", "-o", f"{venv}/.installed", "quarto", f"VENV={venv}",
                             f"PY={sys.executable}"],
                            cwd=REPO, env={**os.environ, "PATH": str(bin_dir)}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [quarto.ABSENT]


INLINE = '''\
# Valeurs {#sec-values}

```{python}
from IPython.display import Markdown
from text2image import lang
s = "3\\u202f072 nombres"
md = Markdown("1\\u202f000")
t = lang.integer(3072, "fr")
empty = ""
```

A `{python} s` B `{python} md` C `{python} t` D `{python} 'a_b'` E `{python} empty` F `{python} 6 * 7`.
'''


def test_inline_values_show_what_quarto_shows(tmp_path, capsys):
    root = write_book(tmp_path, {"fr": {"v": INLINE}, "en": {"v": INLINE}})
    code, _, err = run(root, capsys, langs=["fr"], render=True)
    assert code == 0, err
    page = (root / "build/smoke/preview/fr/v.html").read_text()
    text = re.sub(r"<[^>]+>", "", page[page.index("A 3"):page.index(" F 42") + 5])
    # a str goes through its repr, then Markdown escaping: the page shows 3\\u202f072, as Quarto's did;
    # Markdown objects and lang.Text show the narrow no-break space itself
    assert text == "A 3\\\\u202f072 nombres B 1\u202f000 C 3\u202f072 D a_b E {python} empty F 42"


STDERR = '''\
# Erreurs {#sec-err}

```{python}
import sys, warnings
print("out")
sys.stderr.write("\\x1b[31mfirst\\x1b[0m\\n"); sys.stderr.flush()
print("between", flush=True)
sys.stderr.write("second\\n"); sys.stderr.flush()
```

```{python}
#| warning: false
import sys
sys.stderr.write("hidden\\n"); sys.stderr.flush()
```

```{python}
import text2image  # silences tqdm.auto's "IProgress not found", as in every chapter
from tqdm.auto import tqdm
from transformers.utils import logging as hf_logging
for _ in tqdm(range(3), desc="bar"):
    pass
for _ in hf_logging.tqdm(range(3), desc="Loading weights"):
    pass
```
'''


def test_stderr_blocks_like_quarto_and_no_progress_bar_with_the_books_environment(tmp_path, capsys):
    root = write_book(tmp_path, {"fr": {"e": STDERR}, "en": {"e": STDERR}})
    (root / "_environment").write_text((REPO / "_environment").read_text())
    code, _, err = run(root, capsys, langs=["en"], render=True)
    assert code == 0, err
    page = (root / "build/smoke/preview/en/e.html").read_text()
    blocks = re.findall(r'<div class="cell-output cell-output-(\w+)">\s*<pre><code>(.*?)</code></pre>', page, re.S)
    # one block per stream output, colours gone; warning: false drops stderr; no bar, no library message
    assert [b for b in blocks if b[0] == "stderr"] == [("stderr", "first"), ("stderr", "second")]
    # the same cell without the book's _environment: Quarto would print both bars in the page
    (root / "_environment").unlink()
    code, _, err = run(root, capsys, langs=["en"], render=True)
    assert code == 0, err
    page = (root / "build/smoke/preview/en/e.html").read_text()
    stderr = [text for kind, text in re.findall(r'cell-output-(\w+)">\s*<pre><code>(.*?)</code>', page, re.S)
              if kind == "stderr"]
    assert any("bar: 100%" in text for text in stderr) and any("Loading weights: 100%" in text for text in stderr)


PROFILE_CHAPTER = '''\
# Profil {#sec-profile}

```{python}
import os
print("profile", os.environ["TEXT2IMAGE_PROFILE"])
```
'''


def test_smoke_never_reads_nor_writes_what_cpu_froze(tmp_path, capsys):
    root = write_book(tmp_path, {"fr": {"p": PROFILE_CHAPTER}, "en": {"p": PROFILE_CHAPTER}})
    (root / "_quarto-smoke.yml").write_text((REPO / "_quarto-smoke.yml").read_text())

    def runs(profile):
        code, out, err = run(root, capsys, profile=profile, langs=["fr"], chapters=["p"])
        assert code == 0, err
        return re.search(r"^fr  p\s+(\w+)", out, re.M).group(1)

    assert runs("cpu") == "executed"
    stored = (root / "build/cpu/fr/p.ipynb").read_bytes()
    assert runs("smoke") == "executed" and runs("smoke") == "executed"  # freeze: false, every time
    assert runs("cpu") == "frozen" and (root / "build/cpu/fr/p.ipynb").read_bytes() == stored
    nb = nbformat.read(root / "build/cpu/fr/p.ipynb", as_version=4)
    assert "profile cpu" in nb.cells[-1].outputs[0]["text"]


def test_language_link_goes_to_the_same_chapter_only_with_the_books_script(tmp_path, capsys):
    root = tiny_book(tmp_path / "a")
    assert run(root, capsys, langs=["fr", "en"], render=True)[0] == 0
    assert 'class="other-lang" href="../en/line.html"' in (root / "build/smoke/preview/fr/line.html").read_text()
    # without rel: alternate, Quarto's pages all link to the other edition's home page: so does the preview
    root = tiny_book(tmp_path / "b")
    config = root / "_quarto-fr.yml"
    config.write_text(config.read_text().replace("        rel: alternate\n", ""))
    assert run(root, capsys, langs=["fr", "en"], render=True)[0] == 0
    assert 'class="other-lang" href="../en/index.html"' in (root / "build/smoke/preview/fr/line.html").read_text()


QUARTO_PAGE = """<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">
<meta name="quarto:offset" content="{offset}"></head><body>
<nav class="navbar"><ul><li class="nav-item"><a class="nav-link" href="{offset}../{other}/index.html" rel="alternate">
<span class="menu-text">{other}</span></a></li></ul></nav><main>page</main>{script}</body></html>
"""


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed (make browser)")
@pytest.mark.parametrize("lang, page, offset, expected", [
    ("fr", "book/fr/clip.html", "../../", "en/book/en/clip.html"),
    ("en", "index.html", "./", "fr/index.html"),
])
def test_the_language_link_script_on_a_page_laid_out_like_quartos(tmp_path, lang, page, offset, expected):
    """The navbar markup of Quarto's navitem.ejs, the layout of _book/<lang>/, and the book's include."""
    other = "en" if lang == "fr" else "fr"
    path = tmp_path / "_book" / lang / page
    path.parent.mkdir(parents=True)
    path.write_text(QUARTO_PAGE.format(lang=lang, other=other, offset=offset,
                                       script=(REPO / "book/_language-link.html").read_text()))
    out = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path}/profile", "--dump-dom", path.as_uri()],
                         capture_output=True, text=True, timeout=120)
    href = re.search(r'<a class="nav-link" href="([^"]+)" rel="alternate"', out.stdout).group(1)
    assert href == (tmp_path / "_book" / expected).as_uri()


PROGRESS = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_train import config, make_problem, new_model
from text2image import train
batch_fn, loss_fn = make_problem()
train.Trainer(new_model(), loss_fn, batch_fn, config(steps=3), {run!r}, device="cpu").fit(progress=True)
"""


def test_training_shows_its_bar_except_under_the_books_environment(tmp_path):
    script = PROGRESS.format(tests=str(REPO / "tests"), run=str(tmp_path / "run"))
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    shown = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    assert "3/3" in shown.stderr  # python -m text2image train keeps its progress bar
    chapter = subprocess.run([sys.executable, "-c", script.replace("/run'", "/run2'")], capture_output=True,
                             text=True, timeout=300, env={**env, **quarto_environment(REPO, ["en", "cpu"])})
    assert chapter.returncode == 0, chapter.stderr
    assert chapter.stderr == ""
