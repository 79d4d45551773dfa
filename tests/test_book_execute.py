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

from bookkit import browser_check, chromium, same, write_book
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
    # lightbox: true in _quarto.yml: a click on a figure opens the full-size image, in Quarto and in the preview
    assert '<a href="figures/fig-line.png" class="t2i-lightbox"><img src="figures/fig-line.png"' in en
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
md = Markdown("1\\u202f000")
t = lang.integer(3072, "fr")
empty = ""
```

B `{python} md` C `{python} t` D `{python} 'a_b'` E `{python} empty` F `{python} 6 * 7`.
'''


def test_inline_values_show_what_quarto_shows(tmp_path, capsys):
    root = write_book(tmp_path, {"fr": {"v": INLINE}, "en": {"v": INLINE}})
    code, _, err = run(root, capsys, langs=["fr"], render=True)
    assert code == 0, err
    page = (root / "build/smoke/preview/fr/v.html").read_text()
    text = re.sub(r"<[^>]+>", "", page[page.index("B 1"):page.index(" F 42") + 5])
    # Markdown objects and lang.Text show the narrow no-break space itself; a str without escapes its text
    assert text == "B 1\u202f000 C 3\u202f072 D a_b E {python} empty F 42"


# A str whose repr escapes something (a narrow no-break space, a newline, a backslash) reads differently on
# Quarto's page; one that needs no escape (D above) is fine.
REPR = '''\
# Valeurs {#sec-values}

```{python}
s = "3\\u202f072 nombres"
```

Ligne sans valeur.

A `{python} s` B `{python} "x\\ny"` C `{python} "ok"`.
'''


def test_a_str_that_quarto_would_show_through_its_repr_fails_the_render_naming_its_line(tmp_path, capsys):
    root = write_book(tmp_path, {"fr": {"v": REPR}, "en": {"v": REPR}})
    code, _, err = run(root, capsys, langs=["fr"])
    assert code == 1
    lines = [line for line in err.splitlines() if "inline" in line]
    assert len(lines) == 2, err
    assert lines[0].startswith("error: book/fr/v.qmd:9: inline `{python} s` is a str that Quarto shows through "
                               "its repr, as 3\\u202f072 nombres: return text2image.lang.Text")
    assert "`{python} \"x\\ny\"`" in lines[1] and "as x\\ny:" in lines[1]


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


# ---- issue 14: threads, Ctrl-C, concurrent renders; issue 15: figure text, citations, a quiet log ----------

import signal  # noqa: E402
import textwrap  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from text2image.book import checks, execute, freeze, preview, project, qmd  # noqa: E402

THREADS = '''\
# Fils {#sec-threads}

```{python}
import os, torch
print(torch.get_num_threads(), os.environ["OMP_NUM_THREADS"], os.environ["MKL_NUM_THREADS"])
```
'''


def test_every_kernel_runs_with_the_pinned_threads_and_says_so(tmp_path, capsys, monkeypatch):
    root = write_book(tmp_path, {"fr": {"t": THREADS}, "en": {"t": THREADS}})
    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # a caller's setting does not leak into the chapters
    code, out, err = run(root, capsys, langs=["fr"], chapters=["t"])
    assert code == 0, err
    nb = nbformat.read(root / "build/smoke/fr/t.ipynb", as_version=4)
    assert nb.cells[-1].outputs[0]["text"] == "1 1 1\n"
    assert re.search(r"^fr  t\s+executed\s+[\d.]+ s  \(1 thread\)$", out, re.M)
    assert out.rstrip().endswith("1 thread per kernel")
    assert json.loads((root / "build/smoke/fr/t.json").read_text())["threads"] == 1
    monkeypatch.setenv("TEXT2IMAGE_THREADS", "2")
    code, out, err = run(root, capsys, langs=["fr"], chapters=["t"])
    assert code == 0, err
    assert nbformat.read(root / "build/smoke/fr/t.ipynb", as_version=4).cells[-1].outputs[0]["text"] == "2 2 2\n"
    assert "(2 threads)" in out


SMALL_TEXT = '''\
# Texte {#sec-text}

```{python}
#| label: fig-fine
#| fig-cap: "Lisible"
#| fig-alt: "Lisible"
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(4, 3))
ax.plot([0, 1]); ax.set_title("big enough")
```

```{python}
#| label: fig-tiny
#| fig-cap: "Petit"
#| fig-alt: "Petit"
fig, ax = plt.subplots(figsize=(4, 3))
ax.plot([0, 1]); ax.set_xlabel("tiny label", fontsize=5)
```

```{python}
#| label: fig-wide
#| fig-cap: "Large"
#| fig-alt: "Large"
fig, axes = plt.subplots(1, 6, figsize=(14, 2.5))
for ax in axes: ax.plot([0, 1]); ax.set_title("panel", fontsize=11)
```
'''


def test_a_figure_whose_text_is_too_small_in_the_column_fails(tmp_path, capsys):
    root = write_book(tmp_path, {"fr": {"s": SMALL_TEXT}, "en": {"s": SMALL_TEXT}})
    code, out, err = run(root, capsys, langs=["en"], chapters=["s"])
    assert code == 1
    lines = [line.removeprefix("error: ") for line in err.strip().splitlines()]
    assert len(lines) == 2, err
    assert lines[0].startswith("book/en/s.qmd:12: figure 'fig-tiny': its smallest text ('tiny label', 5 pt at "
                               "110 dpi) shows at 5.0 pt, under the book's 9 pt")
    assert re.match(r"book/en/s\.qmd:20: figure 'fig-wide': its smallest text \('0\.0', 10 pt at 110 dpi, "
                    r"1\d{3} px wide in a 752 px column\) shows at [4-7]\.\d pt", lines[1])  # the tick labels
    assert not (root / "build/smoke/en/s.json").exists()  # not frozen, figures not written
    # what the kernel's hook saw travels in the notebook, beside each PNG
    nb = execute.execute(qmd.parse(root / "book/en/s.qmd", root), qmd.to_notebook(qmd.parse(root / "book/en/s.qmd", root)),
                         cwd=root / "book/en", env=execute.kernel_env(root, "smoke", "en"), timeout=300, root=root,
                         fig_options={"fig-dpi": 110})
    seen = {item["label"]: item for item in checks.figure_text(qmd.parse(root / "book/en/s.qmd", root), nb, 110)}
    assert seen["fig-fine"]["smallest_pt"] >= 9 and seen["fig-fine"]["on_page"] >= 9
    assert seen["fig-tiny"]["smallest_text"] == "tiny label" and seen["fig-tiny"]["on_page"] == 5
    assert seen["fig-wide"]["width_px"] > 752 and seen["fig-wide"]["width_in"] == 14  # a tight bbox crops it


def test_a_kernel_is_not_interrupted_before_its_shutdown(tmp_path, monkeypatch):
    """jupyter_client sends SIGINT before every shutdown; a kernel between two messages then logs
    '[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel' into the build log."""
    from jupyter_client.manager import AsyncKernelManager

    sent = []
    original = AsyncKernelManager._async_signal_kernel

    async def spy(self, signum):
        sent.append(signum)
        await original(self, signum)

    monkeypatch.setattr(AsyncKernelManager, "_async_signal_kernel", spy)
    root = write_book(tmp_path, same("# A\n\n```{python}\nx = 1\n```\n\nValeur `{python} x`.\n"))
    doc = qmd.parse(root / "book/fr/a.qmd", root)
    execute.execute(doc, qmd.to_notebook(doc), cwd=root / "book/fr", env=execute.kernel_env(root, "smoke", "fr"),
                    timeout=300, root=root)
    assert sent == []


LONG = '''\
# Long {{#sec-long}}

```{{python}}
import os, signal, time
{ignore}open({marker!r} + os.environ["TEXT2IMAGE_LANG"], "w").write(str(os.getpid()))
for _ in range(1200):
    time.sleep(0.1)
```
'''
QUICK = "# Vite {#sec-quick}\n\n```{python}\nx = 1\n```\n"


@pytest.mark.parametrize("ignore", ["", "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"], ids=["sleeps", "ignores"])
def test_ctrl_c_stops_the_book_within_seconds_freezes_nothing_unfinished_and_says_one_line(tmp_path, ignore):
    marker = str(tmp_path / "kernel-")
    long = LONG.format(ignore=ignore, marker=marker)
    root = write_book(tmp_path / "book", {"fr": {"quick": QUICK, "long": long}, "en": {"quick": QUICK, "long": long}})
    env = {**os.environ, "PYTHONPATH": str(REPO / "code"), "TEXT2IMAGE_ROOT": str(root)}
    env.pop("TEXT2IMAGE_DEBUG", None)
    process = subprocess.Popen([sys.executable, "-m", "text2image", "book", "--profile", "smoke", "--no-render"],
                               cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not all(Path(marker + lang).is_file() and Path(marker + lang).read_text() for lang in ("fr", "en")):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.2)
        pids = [int(Path(marker + lang).read_text()) for lang in ("fr", "en")]
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
        stopped = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert stopped < (15 if ignore else 10), stopped  # an ignored interrupt waits for the kill (5 s), no more
    assert err.splitlines() == ["interrupted: stopped book/fr/long.qmd, book/en/long.qmd; nothing of an unfinished "
                                "chapter was frozen or written"], err
    for lang in ("fr", "en"):
        assert (root / f"build/smoke/{lang}/quick.json").is_file()  # finished before: kept
        assert not (root / f"build/smoke/{lang}/long.json").exists()  # stopped: not frozen
    time.sleep(0.5)
    assert [pid for pid in pids if alive(pid)] == []  # no kernel left behind
    if not ignore:  # the traceback, on demand
        for lang in ("fr", "en"):
            Path(marker + lang).unlink()
        env["TEXT2IMAGE_DEBUG"] = "1"
        process = subprocess.Popen([sys.executable, "-m", "text2image", "book", "--profile", "smoke", "--no-render",
                                    "--chapter", "long", "--lang", "en"], cwd=root, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while not (Path(marker + "en").is_file() and Path(marker + "en").read_text()):
            assert process.poll() is None, process.communicate()
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 130 and "Traceback (most recent call last)" in err
        assert err.splitlines()[-1].startswith("interrupted: stopped book/en/long.qmd")


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie waiting for its parent to reap it does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _edition(root: Path, lang: str = "fr"):
    proj = project.load(root)
    docs = build.parse_editions(proj)[lang]
    return proj, docs, [qmd.to_notebook(d) for d in docs]


def test_two_renders_at_once_never_crash_nor_show_half_a_preview(tmp_path):
    root = write_book(tmp_path / "book", {"fr": {f"c{n}": f"# C{n}\n\nTexte {n}.\n" for n in range(4)},
                                          "en": {f"c{n}": f"# C{n}\n\nText {n}.\n" for n in range(4)}})
    proj, docs, notebooks = _edition(root)
    out = tmp_path / "preview" / "fr"
    names = [d.path.stem for d in docs]
    errors, seen, done = [], [], threading.Event()

    def writer(who: int) -> None:
        try:
            for round_ in range(4):
                preview.write_edition("fr", docs, notebooks, [False] * len(docs), proj.render_config("fr", "smoke"),
                                      out, f"{who}-{round_}", root=root)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    def reader() -> None:
        while not done.is_set():
            if out.exists() or seen:
                pages = [out / f"{name}.html" for name in names] + [out / "style.css"]
                seen.append(all(p.is_file() and (p.suffix != ".html" or p.read_text().rstrip().endswith("</html>"))
                                for p in pages))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    watcher.join()
    assert errors == []
    assert seen and all(seen), f"{seen.count(False)} of {len(seen)} looks saw half a preview"
    assert sorted(p.name for p in out.parent.iterdir()) == [".fr.lock", "fr"]  # no staging folder left behind


CITING = {
    "fr": "# Texte {#sec-text}\n\nComme l'a montré @known2021, et d'autres [@known2021, p.\u00a03].\n",
    "en": "# Text {#sec-text}\n\nAs @known2021 showed, and others [@known2021, p. 3].\n",
}


def test_the_preview_resolves_citations_into_the_references_page(tmp_path, capsys):
    from test_book_parse import BIB, QUARTO_BIB

    chapters = {lang: {"t": CITING[lang], "references": f"# {'Références' if lang == 'fr' else 'References'} "
                       "{.unnumbered}\n\n::: {#refs}\n:::\n"} for lang in ("fr", "en")}
    root = write_book(tmp_path, chapters, quarto=QUARTO_BIB + "nocite: |\n  @other2020\n")
    (root / "references.bib").write_text(BIB + BIB.replace("known2021", "other2020").replace("A Known", "Another"))
    code, out, err = run(root, capsys, render=True)
    assert code == 0, err
    page = (root / "build/smoke/preview/en/t.html").read_text()
    assert page.count('href="references.html#ref-known2021" role="doc-biblioref"') == 2
    assert '<div id="refs" style="display: none"' in page  # hidden, as Quarto hides it: the references page shows it
    refs = (root / "build/smoke/preview/fr/references.html").read_text()
    assert 'id="ref-known2021"' in refs and 'id="ref-other2020"' in refs  # cited, and nocite
    if chromium():
        result = browser_check(root / "build/smoke/preview")
        assert result["problems"] == [], json.dumps(result, indent=1)


def test_a_book_render_writes_no_kernel_log_line(tmp_path):
    """The build log of a book whose chapters pass: the runner's lines only, nothing from ipykernel."""
    root = tiny_book(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO / "code"), "TEXT2IMAGE_ROOT": str(root)}
    result = subprocess.run([sys.executable, "-m", "text2image", "book", "--profile", "smoke", "--no-render"],
                            cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert all(re.match(r"^(fr|en)  \w+\s+executed|^book \(smoke\)", line) for line in result.stdout.splitlines())
