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


GOOD = "# A {#sec-a}\n\n```{python}\n#| label: fig-a\n#| fig-cap: A\n#| fig-alt: A dot\nx = 1\n```\n"


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
    assert [d.path.name for d in docs["fr"]] == ["index.qmd", "a.qmd", "b.qmd"]


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
    assert "book/fr/a.qmd and book/en/a.qmd differ at code cell 1 (fr lines 3-8, en lines 3-8)" in message
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
    (GOOD.replace("label: fig-a", "label: fig_a"), "contains an underscore"),
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
    with pytest.raises(BookError, match="no chapter named 'nope'; the chapters are: index, a"):
        write_book(tmp_path, same(GOOD))
        build.run("smoke", chapters=["nope"], root=tmp_path, render=False)


@pytest.mark.parametrize("prose, words", [
    ("Une liste : deux.", "before ':'"),
    ("Vraiment ?", "before '?'"),
    ("Il dit « oui\u00a0».", "after «"),
    ("Un taux de 12 %.", "before '%'"),
    ("Un taux de `{python} share` %.", "before '%'"),  # the number an inline expression writes is a word
    ("Le réglage `steps` : vingt.", "before ':'"),
    ("Une échelle $s$ : trois.", "before ':'"),
])
def test_french_prose_wants_no_break_spaces(tmp_path, prose, words):
    fr = "# A {#sec-a}\n\n" + prose + "\n" + GOOD[13:]
    with pytest.raises(BookError, match=rf"book/fr/a.qmd:3: French typography: a breaking space {words}"):
        _static(tmp_path, {"fr": {"a": fr}, "en": {"a": GOOD}})


def test_french_typography_ignores_code_math_and_english(tmp_path):
    fr = ("# A {#sec-a}\n\nBien\u00a0: `d = {\"a\" : 1}`, $f : x$ et «\u00a0oui\u00a0».\n"
          "\n::: {.callout-note}\nNote\u00a0!\n:::\n" + GOOD[13:])
    en = "# A {#sec-a}\n\nFine : as English may write it.\n\n::: {.callout-note}\nNote!\n:::\n" + GOOD[13:]
    write_book(tmp_path, {"fr": {"a": fr}, "en": {"a": en}})
    build.static_checks(build.project.load(tmp_path))  # no error


def test_french_captions_want_no_break_spaces_too(tmp_path):
    fr = GOOD.replace("#| fig-cap: A", '#| fig-cap: "Deux courbes : la perte et le score."')
    with pytest.raises(BookError, match=r"book/fr/a.qmd:5: French typography in the fig-cap: a breaking space before ':'"):
        _static(tmp_path, {"fr": {"a": fr}, "en": {"a": GOOD}})
    fixed = fr.replace(" :", "\u00a0:")
    write_book(tmp_path, {"fr": {"a": fixed}, "en": {"a": GOOD}})
    build.static_checks(build.project.load(tmp_path))  # no error


# ---- what real Quarto does (issue 13) ---------------------------------------------------------------

from pathlib import Path  # noqa: E402

from bookkit import HOME  # noqa: E402
from text2image.book import checks, crossref, freeze, inline, project, quarto  # noqa: E402
from text2image.book.execute import quarto_environment  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_a_book_without_a_root_home_page_fails_with_quartos_message(tmp_path):
    write_book(tmp_path / "none", same(GOOD), home=None)
    with pytest.raises(BookError, match=r"_quarto-fr.yml: Book contents must include a home page \(e\.g\. index\.md\)"):
        project.load(tmp_path / "none")
    # an index.qmd inside book/<lang>/ is not the home page Quarto's book type looks for
    chapters = {"fr": {"index": "# Préface {.unnumbered}\n", "a": GOOD}, "en": {"index": "# Preface\n", "a": GOOD}}
    write_book(tmp_path / "nested", chapters, home=None)
    with pytest.raises(BookError, match="Book contents must include a home page"):
        project.load(tmp_path / "nested")


def test_the_home_page_goes_first_unnumbered_and_chapters_count_from_1(tmp_path):
    root = write_book(tmp_path, {"fr": {"a": GOOD, "b": "# B\n"}, "en": {"a": GOOD, "b": "# B\n"}})
    listed = (root / "_quarto-en.yml").read_text()
    home_entry = '    - href: index.qmd\n      text: "Home"\n'
    (root / "_quarto-en.yml").write_text(listed.replace(home_entry, "") + home_entry)  # listed last
    proj = project.load(root)
    assert proj.names == ["index", "a", "b"]  # Quarto moves the home page to the front
    docs = build.static_checks(proj)
    outline = crossref.outline("en", docs["en"], proj.render_config("en", "cpu"),
                               [c.text for c in proj.editions["en"].chapters])
    assert [(c.name, c.number, c.title) for c in outline.chapters] == [("index", None, "Home"), ("a", 1, "A"),
                                                                       ("b", 2, "B")]
    assert outline.targets["fig-a"].number == "1.1"


def test_a_home_page_that_only_pulls_in_content_is_numbered_like_quarto_numbers_it(tmp_path):
    """Quarto reads the raw file: no heading of its own, so no .unnumbered, so chapter 1 named 'index.html'."""
    home = '::: {.content-visible when-profile="fr"}\n{{< include book/fr/_preface.qmd >}}\n:::\n'
    root = write_book(tmp_path, same(GOOD), home=home)
    for lang in ("fr", "en"):
        text = (root / f"_quarto-{lang}.yml").read_text()
        (root / f"_quarto-{lang}.yml").write_text(text.replace('      text: "Accueil"\n', "").replace(
            '      text: "Home"\n', ""))
    proj = project.load(root)
    docs = build.static_checks(proj)
    outline = crossref.outline("en", docs["en"], texts=[c.text for c in proj.editions["en"].chapters])
    assert [(c.number, c.title) for c in outline.chapters] == [(1, "index.html"), (2, "A")]


def test_each_edition_sees_its_own_conditional_content_line_for_line():
    fr = qmd.profile_view(HOME, ["fr", "cpu"])
    en = qmd.profile_view(HOME, ["en", "smoke"])
    assert "Accueil" in fr and "Home" not in fr and "Home" in en and "Accueil" not in en
    assert fr.count("\n") == en.count("\n") == HOME.count("\n")
    assert ":::" not in fr
    hidden = "::: {.content-hidden unless-profile=\"smoke\"}\nonly smoke\n:::\n::: {.note}\nkept\n:::\n"
    assert "only smoke" in qmd.profile_view(hidden, ["fr", "smoke"])
    assert "only smoke" not in qmd.profile_view(hidden, ["fr", "cpu"])
    assert "::: {.note}" in qmd.profile_view(hidden, ["fr", "cpu"])


@pytest.mark.parametrize("data, text", [
    ({"text/plain": "'3\\u202f072 nombres'"}, "3\\\\\\\\u202f072 nombres"),  # repr escapes, Markdown escapes again
    ({"text/plain": "'a_b.c'"}, "a\\_b\\.c"),
    ({"text/plain": "8"}, "8"),  # not quoted: kept as is
    ({"text/plain": "'<Markdown>'", "text/markdown": "1\u202f000"}, "1\u202f000"),
    ({"text/plain": "x", "text/markdown": "*m*", "text/html": "<b>h</b>"}, "`<b>h</b>`{=html}"),
    ({"text/plain": "''"}, ""),  # empty: Quarto keeps the expression as written
])
def test_inline_values_become_markdown_as_quarto_writes_them(data, text):
    assert inline.markdown({"data": data}) == text


def test_cross_reference_words_are_quartos_with_the_editions_language_keys(tmp_path):
    chapter = GOOD + "\n```{python}\n#| label: tbl-a\n#| tbl-cap: T\nprint(1)\n```\n\nVoir @tbl-a.\n"
    root = write_book(tmp_path / "plain", same(chapter), french="")
    proj = project.load(root)
    docs = build.static_checks(proj)
    plain = crossref.outline("fr", docs["fr"], proj.render_config("fr", "cpu"))
    assert plain.text("tbl-a") == "Table\u00a01.1" and plain.separator == ": "  # Quarto's French file
    root = write_book(tmp_path / "book", same(chapter))
    proj = project.load(root)
    docs = build.static_checks(proj)
    french = crossref.outline("fr", docs["fr"], proj.render_config("fr", "cpu"))
    assert french.text("tbl-a") == "Tableau\u00a01.1" and french.caption("tbl-a") == "Tableau\u00a01.1"
    assert french.separator == "\u00a0: " and french.text("sec-a") == "Chapitre\u00a01"


def test_the_first_profile_named_wins_a_merge_as_in_quarto(tmp_path):
    root = write_book(tmp_path, same(GOOD))
    (root / "_quarto-smoke.yml").write_text("project:\n  output-dir: elsewhere\nexecute:\n  freeze: false\n")
    (root / "_quarto-fr.yml").write_text((root / "_quarto-fr.yml").read_text() + "project:\n  output-dir: _book/fr\n")
    proj = project.load(root)
    merged = proj.render_config("fr", "smoke")
    assert merged["project"] == {"type": "book", "output-dir": "_book/fr"}
    assert freeze.mode(merged) is False and freeze.mode(proj.render_config("fr", "cpu")) == "auto"
    assert proj.active_profiles("fr", "cpu") == ["fr", "cpu"]


@pytest.mark.parametrize("lines, missing", [
    ("build/\n.quarto/\n", ["/.quarto/"]),  # not the exact line Quarto looks for
    ("build/\n /.quarto/ \n", []),
    ("", ["/.quarto/"]),
])
def test_gitignore_lines_quarto_would_append(tmp_path, lines, missing):
    root = write_book(tmp_path, same(GOOD))
    (root / ".gitignore").write_text(lines)
    assert checks.quarto_gitignore_entries(root) == missing
    if missing:
        with pytest.raises(BookError, match=r"\.gitignore: lacks the exact line\(s\) '/\.quarto/'"):
            build.static_checks(project.load(root))
    (root / "_environment.local").write_text("SECRET=1\n")
    assert checks.quarto_gitignore_entries(root) == missing + ["/_*.local"]


def test_a_frozen_home_page_that_runs_code_is_refused(tmp_path):
    home = HOME.replace("Le livre.", "Le livre.\n\n```{python}\nprint(1)\n```")
    home = home.replace("The book.", "The book.\n\n```{python}\nprint(1)\n```")
    root = write_book(tmp_path, same(GOOD), home=home)
    with pytest.raises(BookError, match=r"index.qmd:1: this page is shared by both editions and runs code, but the "
                                        r"cpu, gpu, smoke profile\(s\) freeze it"):
        build.static_checks(project.load(root))
    (root / "index.qmd").write_text("---\nexecute:\n  freeze: false\n---\n\n" + home)
    build.static_checks(project.load(root))


def test_kernels_get_quartos_environment_files_by_quartos_priority(tmp_path):
    (tmp_path / "_environment").write_text("A=base\nB=base\nC=base\n# comment\n")
    (tmp_path / "_environment-smoke").write_text("B=smoke\nC='smoke'\n")
    (tmp_path / "_environment-fr").write_text("C=fr\n")
    assert quarto_environment(tmp_path, ["fr", "smoke"]) == {"C": "fr", "B": "smoke", "A": "base"}


def test_quarto_commands_and_environment():
    assert quarto.commands("cpu") == [["quarto", "render", "--profile", "fr"], ["quarto", "render", "--profile", "en"]]
    assert quarto.commands("smoke", ["en"]) == [
        ["quarto", "render", "--profile", "en,smoke", "--output-dir", "build/smoke/quarto/en"]]
    env = quarto.environment({"PATH": "/bin", "TEXT2IMAGE_PROFILE": "smoke", "TEXT2IMAGE_LANG": "en"}, "/venv/python")
    assert env == {"PATH": "/bin", "QUARTO_PYTHON": "/venv/python"}


def test_the_real_book_follows_quartos_book_layout():
    proj = project.load(REPO)
    for lang, text in (("fr", "Préface"), ("en", "Preface")):
        home = proj.editions[lang].chapters[0]
        assert home.home and home.path == REPO / "index.qmd" and home.text == text
    docs = build.parse_editions(proj)  # the layout alone: the checks have a test of their own, below
    for lang in ("fr", "en"):
        config = proj.render_config(lang, "cpu")
        outline = crossref.outline(lang, docs[lang], config, [c.text for c in proj.editions[lang].chapters])
        numbers = [c.number for c in outline.chapters]
        # the glossary and the references close the book, unnumbered like the home page
        assert [c.name for c in outline.chapters][-2:] == ["glossary", "references"]
        assert numbers == [None] + list(range(1, len(numbers) - 2)) + [None, None]
        assert config["project"]["output-dir"] == f"_book/{lang}"
        assert freeze.mode(config) == "auto" and freeze.mode(config, docs[lang][0].front_matter) is False
        for profile in ("smoke", "gpu"):
            assert freeze.mode(proj.render_config(lang, profile)) is False
        env = quarto_environment(REPO, proj.active_profiles(lang, "smoke"))
        assert env["TEXT2IMAGE_PROFILE"] == "smoke" and env["TEXT2IMAGE_LANG"] == lang
        assert env["TQDM_DISABLE"] == "1" and env["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    assert crossref.words(proj.render_config("fr", "cpu"), "fr")["tbl"] == "Tableau"
    assert checks.quarto_gitignore_entries(REPO) == []
    assert not list((REPO / "book").glob("*/index.qmd"))


def test_the_preface_points_to_every_written_chapter_and_calls_none_of_them_forthcoming():
    """The plan of the book once called two written chapters "forthcoming": each is now named by its label."""
    proj = project.load(REPO)
    docs = build.parse_editions(proj)
    for lang, later in (("fr", "à venir"), ("en", "forthcoming")):
        home, *chapters = docs[lang]
        cited = {ref.name for ref in home.references}
        written = [doc.labels[0].name for doc in chapters if doc.path.stem not in ("glossary", "references")]
        assert [name for name in written if name not in cited] == []
        lines = home.raw.splitlines()
        assert [ref.name for ref in home.references if later in lines[ref.line - 1].replace("\u00a0", " ")] == []


# ---- issue 14 (13) and issue 15: images, alt text, parity beyond code, citations --------------------

import re  # noqa: E402


def test_a_missing_image_fails_naming_the_file_and_the_line(tmp_path):
    text = GOOD + "\nVoir ci-dessous.\n\n![Rien](images/nothing-here.png)\n"
    root = write_book(tmp_path, same(text))
    with pytest.raises(BookError, match=r"book/fr/a.qmd:12: image images/nothing-here.png not found "
                                        r"\(no file book/fr/images/nothing-here.png\)"):
        build.static_checks(project.load(root))
    for lang in ("fr", "en"):  # present (relative to the chapter), or written as code: fine
        (root / "book" / lang / "images").mkdir()
        (root / "book" / lang / "images" / "nothing-here.png").write_bytes(b"\x89PNG")
    build.static_checks(project.load(root))
    root = write_book(tmp_path / "html", same(GOOD + '\n<img src="/figures/gone.png">\n\n`![x](no.png)`\n'))
    with pytest.raises(BookError, match=r"book/fr/a.qmd:10: image /figures/gone.png not found \(no file figures/gone.png\)"):
        build.static_checks(project.load(root))


def test_every_figure_needs_alt_text_in_each_edition(tmp_path):
    no_alt = GOOD.replace("#| fig-alt: A dot\n", "")
    markdown = GOOD + "\n![Une image](i.png){#fig-md}\n"
    root = write_book(tmp_path, {"fr": {"a": no_alt}, "en": {"a": markdown}})
    for lang in ("fr", "en"):
        (root / "book" / lang / "i.png").write_bytes(b"\x89PNG")
    with pytest.raises(BookError) as error:
        build.static_checks(project.load(root))
    message = str(error.value)
    assert "book/fr/a.qmd:3: figure cell 'fig-a' has no fig-alt" in message
    assert "book/en/a.qmd:10: figure 'fig-md' has no fig-alt=\"...\"" in message


def test_an_alt_text_left_untranslated_is_a_divergence(tmp_path):
    alt = GOOD.replace("fig-alt: A dot", "fig-alt: A single blue dot")
    with pytest.raises(BookError, match=r"book/fr/a.qmd:3 and book/en/a.qmd:3: figure 'fig-a' has the same fig-alt "
                                        r"in both editions"):
        build.static_checks(project.load(write_book(tmp_path, same(alt))))
    fr = alt.replace("A single blue dot", "Un seul point bleu")
    build.static_checks(project.load(write_book(tmp_path / "ok", {"fr": {"a": fr}, "en": {"a": alt}})))


def test_the_editions_quote_the_same_inline_values_in_the_same_order(tmp_path):
    fr = GOOD + "\nD'abord `{python} x`, puis `{python} x + 1`.\n"
    en = GOOD + "\nFirst `{python} x + 1`,\nthen `{python} x`.\n"
    with pytest.raises(BookError) as error:
        build.static_checks(project.load(write_book(tmp_path, {"fr": {"a": fr}, "en": {"a": en}})))
    assert str(error.value) == (
        "the editions differ at inline expression 1: fr has `{python} x` at book/fr/a.qmd:10, en has "
        "`{python} x + 1` at book/en/a.qmd:10; both must have the same inline expressions in the same order")
    shorter = GOOD + "\nFirst `{python} x`.\n"
    with pytest.raises(BookError, match=r"at inline expression 2: fr has `\{python\} x \+ 1` at book/fr/a.qmd:10, "
                                        r"en has none left in book/en/a.qmd \(it has 1\)"):
        build.static_checks(project.load(write_book(tmp_path / "b", {"fr": {"a": fr}, "en": {"a": shorter}})))


def test_the_editions_make_the_same_references_and_callouts(tmp_path):
    fr = GOOD + "\nVoir @fig-a, et encore @fig-a.\n\n::: {.callout-tip}\nAstuce.\n:::\n"
    en = GOOD + "\nSee @fig-a.\n\n::: {.callout-warning}\nCareful.\n:::\n"
    with pytest.raises(BookError) as error:
        build.static_checks(project.load(write_book(tmp_path, {"fr": {"a": fr}, "en": {"a": en}})))
    lines = str(error.value).splitlines()
    assert lines == [
        "the editions differ at callout 1: fr has callout-tip at book/fr/a.qmd:12, en has callout-warning at "
        "book/en/a.qmd:12; both must have the same callouts in the same order",
        "@fig-a: reference made 2\u00d7 in book/fr/a.qmd (lines 10, 10) but 1\u00d7 in book/en/a.qmd (line 10); "
        "both editions must make the same references",
    ]
    # the order of references may differ (sentences are built differently), their number may not
    fr = GOOD + "\nVoir @sec-a puis @fig-a.\n"
    en = GOOD + "\nSee @fig-a, from @sec-a.\n"
    build.static_checks(project.load(write_book(tmp_path / "ok", {"fr": {"a": fr}, "en": {"a": en}})))


def test_the_two_halves_of_the_home_page_are_held_together(tmp_path):
    home = HOME.replace("Le livre.", "Le livre, `{python} 1 + 1` chapitres, voir @sec-a.")
    home = home.replace("The book.", "The book, see @sec-a.")
    home = "---\nexecute:\n  freeze: false\n---\n\n" + home
    root = write_book(tmp_path, same(GOOD), home=home)
    with pytest.raises(BookError, match=r"at inline expression 1: fr has `\{python\} 1 \+ 1` at index.qmd:10, en has "
                                        r"none left in index.qmd \(it has 0\)"):
        build.static_checks(project.load(root))


BIB = """@article{known2021,
  author = {Doe, Jane}, title = {A Known Work}, journal = {J}, year = {2021}, eprint = {2101.00001},
}
"""


def test_citations_resolve_in_the_bibliography_or_fail_with_a_hint(tmp_path):
    text = GOOD + "\nComme l'a montré @known2021 [voir aussi @knwn2021, p. 3].\n"
    root = write_book(tmp_path, same(text), quarto=QUARTO_BIB)
    (root / "references.bib").write_text(BIB)
    with pytest.raises(BookError) as error:
        build.static_checks(project.load(root))
    assert str(error.value).splitlines()[0] == (
        "book/fr/a.qmd:10: @knwn2021 is no entry of references.bib (did you mean @known2021?)")
    (root / "references.bib").write_text(BIB + BIB.replace("known2021", "knwn2021"))
    docs = build.static_checks(project.load(root))
    assert [c.name for c in docs["fr"][1].citations] == ["known2021", "knwn2021"]
    # an e-mail, a decorator in code and a cross-reference are no citations
    plain = GOOD + "\nÉcrire à auteur@example.org\u00a0; `@property`\u00a0; voir @fig-a.\n"
    assert build.static_checks(project.load(write_book(tmp_path / "p", same(plain))))["fr"][1].citations == []


def test_a_citation_without_a_bibliography_is_refused(tmp_path):
    root = write_book(tmp_path, same(GOOD + "\nVoir [@known2021].\n"))
    with pytest.raises(BookError, match=r"book/fr/a.qmd:10: \[@known2021\] is a citation, but _quarto.yml names no "
                                        r"bibliography"):
        build.static_checks(project.load(root))


def test_the_editions_cite_the_same_works(tmp_path):
    root = write_book(tmp_path, {"fr": {"a": GOOD + "\nVoir [@known2021].\n"}, "en": {"a": GOOD}}, quarto=QUARTO_BIB)
    (root / "references.bib").write_text(BIB)
    with pytest.raises(BookError, match=r"@known2021: citation made 1\u00d7 in book/fr/a.qmd \(line 10\) but never in "
                                        r"book/en/a.qmd"):
        build.static_checks(project.load(root))


def test_one_build_lists_every_problem_of_the_sources(tmp_path):
    fr = GOOD.replace("#| fig-alt: A dot\n", "") + "\n![x](gone.png)\n"
    with pytest.raises(BookError) as error:
        build.static_checks(project.load(write_book(tmp_path, {"fr": {"a": fr}, "en": {"a": GOOD}})))
    lines = str(error.value).splitlines()
    assert len(lines) == 2 and "image gone.png not found" in lines[0] and "has no fig-alt" in lines[1]


def test_the_real_book_passes_the_static_checks():
    """Alt text, edition parity, images, citations, typography: everything the book's sources must hold."""
    build.static_checks(project.load(REPO))


from bookkit import QUARTO  # noqa: E402

QUARTO_BIB = QUARTO + "bibliography: references.bib\n"


def test_references_bib_holds_the_works_the_book_names_each_with_an_arxiv_id_or_a_doi():
    entries = checks.bibliography(REPO, project.load(REPO).config)
    text = (REPO / "references.bib").read_text()
    wanted = {"radford2021clip", "ramesh2021dalle", "rombach2022ldm", "oord2017vqvae", "esser2021vqgan",
              "kingma2014vae", "jang2017gumbel", "wang2024tokencompose", "ghosh2023geneval", "gokhale2022visor",
              "yuksekgonul2023aro", "liang2022gap", "heusel2017fid", "ho2020ddpm", "lipman2023flow",
              "dayma2021dallemini"}
    assert wanted <= set(entries)
    for key in entries:
        body = text[text.index(key):].split("\n}\n", 1)[0]
        assert re.search(r"eprint\s*=\s*\{\d{4}\.\d{4,5}\}", body) or re.search(r"doi\s*=\s*\{10\.\d{4,}/", body), key
    for lang in ("fr", "en"):
        page = REPO / "book" / lang / "references.qmd"
        assert "::: {#refs}" in page.read_text() and f"book/{lang}/references.qmd" in \
            (REPO / f"_quarto-{lang}.yml").read_text()


# ---- what every chapter holds, and the glossary -------------------------------------------------------

RERUN = {"fr": "Réexécuter ce chapitre", "en": "Rerun this chapter"}
CLOSING = {"fr": ("À retenir", "Exercices", "Ce que nous avons mesuré"),
           "en": ("What to remember", "Exercises", "What we measured")}


def test_every_chapter_has_its_rerun_box_what_to_remember_exercises_then_the_measured_table():
    """The shape each chapter shares: a "rerun this chapter" box (with its command) before the first section,
    then, at the end and in this order, what to remember, three to five exercises, and what was measured."""
    proj = project.load(REPO)
    for lang in ("fr", "en"):
        for chapter in proj.editions[lang].chapters:
            if chapter.home or chapter.name in ("glossary", "references"):
                continue
            text = chapter.path.read_text()
            box = text.find(f'::: {{.callout-note title="{RERUN[lang]}"}}')
            assert 0 < box < text.find("\n## "), (lang, chapter.name, "no rerun box before the first section")
            assert f"text2image book --lang {lang} --chapter {chapter.name}" in text[box:text.find("\n:::", box)]
            heads = [re.search(rf"^## {re.escape(h)} \{{#sec-[\w-]+\}}$", text, re.M) for h in CLOSING[lang]]
            assert all(heads), (lang, chapter.name, [h for h, m in zip(CLOSING[lang], heads) if not m])
            starts = [m.start() for m in heads]
            assert starts == sorted(starts), (lang, chapter.name, "remember, exercises, measured: in that order")
            exercises = re.findall(r"^\d+\. ", text[starts[1]:starts[2]], re.M)
            assert 3 <= len(exercises) <= 5, (lang, chapter.name, len(exercises))


def test_works_are_cited_not_named_by_hand():
    """A paper named "Radford et al. (2021)" in the prose is a citation ([@radford2021clip]) in waiting: Quarto
    links a citation to the references page and formats it in the edition's language, a typed name it does not."""
    proj = project.load(REPO)
    for lang in ("fr", "en"):
        for chapter in proj.editions[lang].chapters:
            text = qmd.mask(chapter.path.read_text())
            typed = re.findall(r".{0,30}\b(?:et al\.|and [A-Z]\w+|et [A-Z]\w+),? \(?(?:19|20)\d\d\b", text)
            assert not typed, (lang, chapter.name, typed)


def test_the_glossary_names_each_term_in_both_languages_and_where_it_is_introduced():
    pages = {lang: (REPO / "book" / lang / "glossary.qmd").read_text() for lang in ("fr", "en")}
    entries = {lang: re.findall(r"^\*\*(.+?)\*\*(?: \(\*(.+?)\*\))?\n:   .+\(@(sec-[\w-]+)\)\.$", text, re.M)
               for lang, text in pages.items()}
    assert len(entries["fr"]) == len(entries["en"]) >= 30
    pairs = {lang: {(term.replace("*", ""), other or term.replace("*", ""), ref)
                    for term, other, ref in found} for lang, found in entries.items()}
    assert {(b, a, ref) for a, b, ref in pairs["en"]} == pairs["fr"]  # the same pairs, read from either side
    for fr, en in (("auto-encodeur", "autoencoder"), ("plongement", "embedding"), ("jeton", "token"),
                   ("invite", "prompt"), ("dictionnaire", "codebook"), ("négatif difficile", "hard negative"),
                   ("quantification vectorielle", "vector quantisation")):
        assert any(a == fr and b == en for a, b, _ in pairs["fr"]), (fr, en)


# ---- the figure-size rule and the freeze key ---------------------------------------------------------

from text2image import plots  # noqa: E402
from text2image.book import execute  # noqa: E402


def test_the_figure_size_rule_of_plots():
    assert plots.COLUMN_PX == 752 and plots.MIN_TEXT_PT == 9 and plots.BOOK_DPI == 110
    assert plots.text_on_page(10, 110, 6.4 * 110) == 10  # narrower than the column: shown at its size
    assert plots.text_on_page(11, 110, 1540) == pytest.approx(11 * 752 / 1540)  # 5.4 pt: shrunk to the column
    assert plots.text_on_page(10, 50, 100) == pytest.approx(10 * 50 / 110)  # a low-dpi figure shows small text
    assert plots.max_width_in(9) == pytest.approx(plots.COLUMN_IN)
    assert plots.text_on_page(11, 110, plots.max_width_in(11) * 110) == pytest.approx(9)
    assert plots.max_width_in(8) == 0.0  # 8 pt text is too small at any width


def test_the_freeze_key_sees_a_flipped_byte_in_the_weights(tmp_path, monkeypatch):
    folder = tmp_path / "data" / "checkpoints" / "m"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    before = freeze.inputs_digest(tmp_path)
    (folder / "model.safetensors").write_bytes(b"\x00" * 31 + b"\x01" + b"\x00" * 32)  # same size
    assert freeze.inputs_digest(tmp_path) != before
    from text2image import checkpoints

    seen = []
    monkeypatch.setattr(checkpoints, "weights_digest", lambda f: seen.append(f) or "stub")
    freeze.inputs_digest(tmp_path)
    assert seen == [folder]  # one function, the checkpoints' own digest


def test_the_freeze_key_skips_a_training_in_flight_and_the_caches_rebuilt_from_weights(tmp_path):
    """A training swapping in its ``.<name>.new`` folder made the book fail with FileNotFoundError mid-walk;
    a git-ignored cache folder (``vae-long/latents``) is no input either."""
    folder = tmp_path / "data" / "checkpoints" / "m"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    before = freeze.inputs_digest(tmp_path)
    flight = folder.parent / ".n.new"
    flight.mkdir()
    (flight / "manifest.json").write_text("{}")
    cache = folder / "latents"
    cache.mkdir()
    (cache / ".gitignore").write_text("# a cache\n*\n")
    (cache / "train-8-0123456789ab.safetensors").write_bytes(b"\x01" * 64)
    assert freeze.inputs_digest(tmp_path) == before
    assert freeze.checkpoint_inputs(folder.parent) == [folder / "manifest.json", folder / "model.safetensors"]


def test_kernel_threads_come_from_one_variable_and_are_pinned(tmp_path):
    assert execute.threads({}) == 1 and execute.threads({"TEXT2IMAGE_THREADS": "3"}) == 3
    for bad in ("0", "two", "-1"):
        with pytest.raises(BookError, match=r"TEXT2IMAGE_THREADS='.*' is not a number of threads"):
            execute.threads({"TEXT2IMAGE_THREADS": bad})
    env = execute.kernel_env(tmp_path, "smoke", "fr", threads=2)
    assert {env[name] for name in execute.THREAD_VARIABLES} == {"2"} and env["TEXT2IMAGE_THREADS"] == "2"
    assert freeze.chapter_key("t", "cpu", "fr", "i", 1) != freeze.chapter_key("t", "cpu", "fr", "i", 2)


def test_a_click_on_a_figure_opens_it_at_full_size():
    from text2image.book import preview, project

    assert preview.lightbox(project.load(REPO).config)  # Quarto's lightbox, which the preview mirrors
    assert not preview.lightbox({"format": {"html": {"fig-dpi": 110}}})
    assert preview.lightbox({"lightbox": True, "format": {"html": {}}})


def test_no_figure_is_exempt_from_the_readability_rule():
    """The 20 figures drawn before the 9 pt rule waited in ``book/pending.py``, a list that could only
    shrink; all are laid out for the column now, so the list and its exemption are gone for good."""
    import importlib.util

    assert importlib.util.find_spec("text2image.book.pending") is None


def test_an_unfilled_template_field_in_prose_or_caption_is_an_error(tmp_path):
    # a script that typed French spaces once left a literal {NB} in five places of a chapter and its captions
    prose = GOOD.replace("# A {#sec-a}\n", "# A {#sec-a}\n\nDeux courbes{NB}: la perte.\n", 1)
    assert prose != GOOD
    with pytest.raises(BookError, match=r"book/fr/a.qmd:3: an unfilled template field '\{NB\}'"):
        _static(tmp_path, {"fr": {"a": prose}, "en": {"a": GOOD}})
    caption = GOOD.replace("#| fig-cap: A", "#| fig-cap: Deux{NB}courbes")
    assert caption != GOOD
    with pytest.raises(BookError, match=r"book/fr/a.qmd:\d+: an unfilled template field '\{NB\}'"):
        _static(tmp_path, {"fr": {"a": caption}, "en": {"a": GOOD}})
    fine = GOOD.replace("# A {#sec-a}\n", "# A {#sec-a}\n\nUn ensemble $\\{x\\}$, `{python} 1 + 1` et `{NB}` en code.\n", 1)
    write_book(tmp_path, {"fr": {"a": fine}, "en": {"a": fine}})
    build.static_checks(build.project.load(tmp_path))  # maths, inline code and code spans are not prose
