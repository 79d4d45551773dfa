"""The chapter runner's static side: parsing .qmd files and the checks that need no kernel.

Every bad input must fail before any kernel starts, with one message naming the file and line.
"""

from __future__ import annotations

import nbformat
import pytest

from bookkit import same, write_book
from text2image import cli
from text2image.book import build, qmd
from text2image.book.errors import BookError

CHAPTER = '''\
---
title: "Un essai"
---

# Intro {#sec-intro}

Voir @fig-line et [-@tbl-nums], et la @sec-more. Un nombre : `{python} x + 1`. Du `code @fig-nope`.

```{python}
#| label: fig-line
#| fig-cap: "Une ligne, voir @sec-intro"
#| echo: false
x = 41
```

## Plus {#sec-more}

```{python}
#| label: tbl-nums
#| tbl-cap: Des nombres
print(x)
```

````markdown
```{python}
not a cell
```
````
'''


def test_parse_cells_options_inline_front_matter(tmp_path):
    path = tmp_path / "c.qmd"
    path.write_text(CHAPTER)
    doc = qmd.parse(path)
    assert doc.front_matter == {"title": "Un essai"}
    assert doc.title == "Un essai"
    kinds = [c.kind for c in doc.cells]
    assert kinds == ["raw", "markdown", "code", "markdown", "code", "markdown"]
    fig = doc.cells[2]
    assert fig.options == {"label": "fig-line", "fig-cap": "Une ligne, voir @sec-intro", "echo": False}
    assert fig.line == 9 and fig.end == 14 and fig.code == "x = 41"
    assert fig.source.startswith("#| label: fig-line")  # Quarto keeps option lines in the notebook
    inline = doc.cells[1].inline
    assert [(i.expr, i.line) for i in inline] == [("x + 1", 7)]
    assert doc.cells[1].source[inline[0].start: inline[0].end] == "`{python} x + 1`"
    assert [(l.name, l.kind, l.line) for l in doc.labels] == [
        ("sec-intro", "sec", 5), ("fig-line", "fig", 10), ("sec-more", "sec", 16), ("tbl-nums", "tbl", 19)]
    # references in code spans and fenced examples are not references; captions count
    assert sorted((r.name, r.line) for r in doc.references) == [
        ("fig-line", 7), ("sec-intro", 9), ("sec-more", 7), ("tbl-nums", 7)]
    nb = qmd.to_notebook(doc)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    assert [c.cell_type for c in nb.cells] == ["raw", "markdown", "code", "markdown", "code", "markdown"]


@pytest.mark.parametrize("text, line, words", [
    ("Intro\n\n```{python}\nx = 1\n", 3, "never closed"),
    ("Intro\n\n```{python}\n#| label: [oops\nx = 1\n```\n", 4, "not YAML"),
    ("Intro\n\n```{python}\n#| fig_cap: hello\nx = 1\n```\n", 4, "unknown cell option 'fig_cap'"),
    ("Intro\n\n```{r}\nx <- 1\n```\n", 3, "not supported"),
    ("---\ntitle: [x\n---\nIntro\n", 2, "front matter"),
])
def test_parse_errors_name_file_and_line(tmp_path, text, line, words):
    path = tmp_path / "bad.qmd"
    path.write_text(text)
    with pytest.raises(BookError) as error:
        qmd.parse(path, tmp_path)
    assert f"bad.qmd:{line}:" in str(error.value)
    assert words in str(error.value)


GOOD = "# A {#sec-a}\n\n```{python}\n#| label: fig-a\n#| fig-cap: A\nx = 1\n```\n"


def _static(tmp_path, chapters, lists=None):
    write_book(tmp_path, chapters, lists)
    return build.run("smoke", root=tmp_path, render=False)


def test_missing_reference_label(tmp_path):
    with pytest.raises(BookError, match=r"book/en/a.qmd:4: @fig-b refers to no label of the en edition"):
        _static(tmp_path, {"fr": {"a": GOOD}, "en": {"a": "# A {#sec-a}\n\nSee\n@fig-b.\n" + GOOD[13:]}})


def test_cross_chapter_reference_is_fine_but_only_within_the_edition(tmp_path):
    other = "# B\n\nVoir @fig-a.\n"
    write_book(tmp_path, {"fr": {"a": GOOD, "b": other}, "en": {"a": GOOD, "b": other}})
    docs = build.static_checks(build.project.load(tmp_path))
    assert [d.path.name for d in docs["fr"]] == ["a.qmd", "b.qmd"]


def test_chapter_in_one_language_only(tmp_path):
    with pytest.raises(BookError, match=r"book/fr/b.qmd: chapter 'b' is in the fr edition only"):
        _static(tmp_path, {"fr": {"a": GOOD, "b": GOOD.replace("-a", "-b")}, "en": {"a": GOOD}})


def test_chapter_file_without_twin(tmp_path):
    chapters = {"fr": {"a": GOOD, "draft": "# Draft\n"}, "en": {"a": GOOD}}
    with pytest.raises(BookError, match=r"book/fr/draft.qmd: this chapter exists in the fr edition only"):
        _static(tmp_path, chapters, lists={"fr": ["a"], "en": ["a"]})


def test_listed_chapter_missing(tmp_path):
    with pytest.raises(BookError, match=r"_quarto-en.yml:\d+: chapter book/en/zz.qmd does not exist"):
        _static(tmp_path, {"fr": {"a": GOOD}, "en": {"a": GOOD}}, lists={"fr": ["a"], "en": ["zz"]})


def test_fr_en_code_mismatch_names_both_files_and_lines(tmp_path):
    en = GOOD.replace("x = 1", "x = 2")
    with pytest.raises(BookError) as error:
        _static(tmp_path, {"fr": {"a": GOOD}, "en": {"a": en}})
    message = str(error.value)
    assert "book/fr/a.qmd and book/en/a.qmd differ at code cell 1 (fr lines 3-7, en lines 3-7)" in message
    assert "'x = 1' vs 'x = 2'" in message


def test_fr_en_label_mismatch(tmp_path):
    en = GOOD.replace("{#sec-a}", "{#sec-b}")
    with pytest.raises(BookError, match=r"differ in their labels: fr sec-a \(line 1\) vs en sec-b \(line 1\)"):
        _static(tmp_path, {"fr": {"a": GOOD}, "en": {"a": en}})


def test_captions_may_differ_between_languages(tmp_path):
    en = GOOD.replace("fig-cap: A", "fig-cap: Another caption").replace("# A", "# Ah")
    write_book(tmp_path, {"fr": {"a": GOOD}, "en": {"a": en}})
    build.static_checks(build.project.load(tmp_path))


@pytest.mark.parametrize("text, words", [
    (GOOD.replace("fig-a", "fig_a"), "contains an underscore"),
    (GOOD + "\n```{python}\n#| label: fig-a\n#| fig-cap: B\ny = 1\n```\n", "already defined at book/fr/a.qmd:4"),
    (GOOD.replace("#| fig-cap: A\n", ""), "has no fig-cap"),
])
def test_label_errors(tmp_path, text, words):
    with pytest.raises(BookError, match=words):
        _static(tmp_path, same(text))


def test_unknown_profile_is_refused(tmp_path, monkeypatch, capsys):
    write_book(tmp_path, same(GOOD))
    assert build.build(profile="huge", root=tmp_path) == 2
    assert "'huge' is not a profile; choose one of: smoke, cpu, gpu" in capsys.readouterr().err
    monkeypatch.setenv("TEXT2IMAGE_PROFILE", "laptop")
    monkeypatch.setenv("TEXT2IMAGE_ROOT", str(tmp_path))
    assert cli.main(["book", "--no-render"]) == 2
    assert "TEXT2IMAGE_PROFILE='laptop' is not a profile" in capsys.readouterr().err


def test_unknown_chapter_name(tmp_path):
    with pytest.raises(BookError, match="no chapter named 'nope'; the chapters are: a"):
        write_book(tmp_path, same(GOOD))
        build.run("smoke", chapters=["nope"], root=tmp_path, render=False)


@pytest.mark.parametrize("prose, words", [
    ("Une liste : deux.", "before ':'"),
    ("Vraiment ?", "before '?'"),
    ("Il dit « oui\u00a0».", "after «"),
])
def test_french_prose_wants_no_break_spaces(tmp_path, prose, words):
    fr = "# A {#sec-a}\n\n" + prose + "\n" + GOOD[13:]
    with pytest.raises(BookError, match=rf"book/fr/a.qmd:3: French typography: a breaking space {words}"):
        _static(tmp_path, {"fr": {"a": fr}, "en": {"a": GOOD}})


def test_french_typography_ignores_code_math_and_english(tmp_path):
    fr = ("# A {#sec-a}\n\nBien\u00a0: `d = {\"a\" : 1}`, $f : x$ et «\u00a0oui\u00a0».\n"
          "\n::: {.callout-note}\nNote\u00a0!\n:::\n" + GOOD[13:])
    en = "# A {#sec-a}\n\nFine : as English may write it.\n" + GOOD[13:]
    write_book(tmp_path, {"fr": {"a": fr}, "en": {"a": en}})
    build.static_checks(build.project.load(tmp_path))  # no error


def test_french_captions_want_no_break_spaces_too(tmp_path):
    fr = GOOD.replace("#| fig-cap: A", '#| fig-cap: "Deux courbes : la perte et le score."')
    with pytest.raises(BookError, match=r"book/fr/a.qmd:5: French typography in the fig-cap: a breaking space before ':'"):
        _static(tmp_path, {"fr": {"a": fr}, "en": {"a": GOOD}})
    fixed = fr.replace(" :", "\u00a0:")
    write_book(tmp_path, {"fr": {"a": fixed}, "en": {"a": GOOD}})
    build.static_checks(build.project.load(tmp_path))  # no error
